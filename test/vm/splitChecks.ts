/**
 * The checks of a split stack's VMs (stage separated and, with its app servers behind the
 * balancer's stand-in, stage scaled): every server booted as rendered, the private network,
 * PostgreSQL reachable there only, each server running its own part, a signup stored on db and
 * mailed by the worker, an upload in the bucket and on no disk, the db server's backup and its
 * restore drill. separated.test.ts and scaled.test.ts run them on their own stacks; what reaches
 * the site differs (nginx's forwarded port, or the balancer's frontend), hence `Site`. Also what
 * both report: each server's boot figures, the timings table, each VM's tails after a failure.
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import { freePorts } from "../../cli/lib/ports";
import { addHostForward } from "../../cli/vm/qmp";
import type { LocalBucket } from "../../cli/vm/s3";
import { ssh } from "../../cli/vm/ssh";
import type { ServerVm, StackVms } from "../../cli/vm/stackVms";
import { type Vm, consoleTail } from "../../cli/vm/vm";
import { POSTGRES_PORT } from "../../plan/plan";
import { type Site, assertBackupInBucket, assertNoMailToken, isLoopback, journalTail, parseSs, psql, sh, siteUrl, unitProps, verifyAndLogIn, waitForWelcomeEmail } from "./guest";
import { httpRequest } from "../../cli/vm/http";
import { runsPostgres } from "../../provisioning/roles/index";

/** The booted servers of a stack, by name: each must have come up. */
export function serverOf(vms: StackVms, name: string): ServerVm {
  const s = vms.servers.find((x) => x.render.server === name);
  assert.ok(s, `the stack has no server ${name}`);
  assert.ok(!s.error, `server ${name} did not come up: ${s.error?.message}`);
  return s;
}
const vmOf = (vms: StackVms, name: string): Vm => serverOf(vms, name).boot!.vm;
const serversWith = (vms: StackVms, role: ServerVm["render"]["roles"][number]) => vms.servers.filter((s) => s.render.roles.includes(role));
const addressOf = (s: ServerVm) => s.render.privateAddress!.split("/")[0]!;

/**
 * PostgreSQL's answer to an SSLRequest from inside a guest: "S" (TLS offered), "N", or "" when
 * nothing answers. A TCP connect alone would not tell PostgreSQL from anything else listening.
 */
async function pgSslAnswerFrom(vm: Vm, host: string): Promise<string> {
  const r = await ssh(vm, `timeout 5 bash -c 'exec 3<>/dev/tcp/${host}/${POSTGRES_PORT} && printf "\\0\\0\\0\\x08\\x04\\xd2\\x16\\x2f" >&3 && head -c1 <&3' 2>/dev/null`, { timeoutMs: 30000 });
  return r.stdout;
}

/** The same SSLRequest from the host to host:port: the answer byte, or "" when none comes. */
function pgSslAnswerFromHost(port: number, host = "127.0.0.1", timeoutMs = 4000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (answer: string) => { socket.destroy(); resolve(answer); };
    const timer = setTimeout(() => done(""), timeoutMs);
    socket.on("connect", () => socket.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])));
    socket.on("data", (d) => { clearTimeout(timer); done(d.subarray(0, 1).toString("latin1")); });
    socket.on("error", () => { clearTimeout(timer); done(""); });
    socket.on("close", () => { clearTimeout(timer); done(""); });
  });
}

/**
 * Every server: cloud-init done without errors or warnings, every day-2 push ran, the exact
 * user-data and every file as rendered, its hostname, no file naming a network interface; the
 * db server has its server type's memory (the render tunes PostgreSQL for it).
 */
export async function assertBootedAsRendered(vms: StackVms, servers = vms.servers): Promise<void> {
  const failed = servers.filter((s) => s.error).map((s) => s.error!.message);
  assert.deepEqual(failed, [], failed.join("\n\n"));
  for (const s of servers) {
    const vm = vmOf(vms, s.render.server);
    const ci = s.boot!.cloudInit;
    assert.equal(ci.status, "done", s.render.server);
    assert.deepEqual(ci.errors, [], `${s.render.server}: ${JSON.stringify(ci.errors)}`);
    assert.deepEqual(ci.recoverableErrors, {}, `${s.render.server}: ${JSON.stringify(ci.recoverableErrors)}`);
    assert.equal(s.pushes?.count, s.render.pushes.length, s.render.server);
    const sha = crypto.createHash("sha256").update(s.render.userData).digest("hex");
    assert.equal((await sh(vm, "sudo sha256sum /var/lib/cloud/instance/user-data.txt")).split(" ")[0], sha, `${s.render.server}: user-data`);
    const paths = [...s.render.files.keys()];
    const sums = await sh(vm, `sudo sha256sum ${paths.join(" ")}`);
    const onDisk = new Map(sums.trim().split("\n").map((l) => { const [h, p] = l.split(/\s+/); return [p, h]; }));
    for (const [p, content] of s.render.files) {
      assert.equal(onDisk.get(p), crypto.createHash("sha256").update(content).digest("hex"), `${s.render.server}: ${p} differs from the render`);
    }
    assert.equal((await sh(vm, "hostname")).trim(), s.render.server);
    // The interfaces are the provider's business: nothing the server is given names one.
    for (const [p, content] of s.render.files) {
      assert.doesNotMatch(content, /\b(eth\d|ens\d+|enp\d+s\d+)\b/, `${s.render.server}: ${p} names a network interface`);
    }
  }
  const db = serverOf(vms, "db");
  assert.equal(db.vm!.qemuArgs[db.vm!.qemuArgs.indexOf("-m") + 1], String(db.render.serverMemoryMiB));
}

/**
 * Each VM has its planned private address (only it) on the NIC with its MAC, the user-mode NIC's
 * address from DHCP and the only default route; each finds the others there by MAC; the host has
 * no address or local route in the private network and PostgreSQL does not answer it.
 */
export async function assertPrivateNetwork(vms: StackVms): Promise<void> {
  for (const s of vms.servers) {
    const vm = vmOf(vms, s.render.server);
    const nic = vm.privateNic!;
    assert.ok(nic, `${s.render.server} has no private NIC`);
    assert.equal(nic.address, s.render.privateAddress);
    const links = JSON.parse(await sh(vm, "ip -j address show")) as { ifname: string; address: string; addr_info: { family: string; local: string; prefixlen: number; dynamic?: boolean }[] }[];
    const priv = links.find((l) => l.address === nic.mac);
    assert.ok(priv, `${s.render.server}: no interface with MAC ${nic.mac}: ${links.map((l) => `${l.ifname} ${l.address}`).join(", ")}`);
    assert.deepEqual(priv.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`), [nic.address]);
    const pub = links.find((l) => l.addr_info.some((a) => a.family === "inet" && a.local.startsWith("10.0.2.")));
    assert.ok(pub && pub !== priv, `${s.render.server}: the user-mode NIC has no address`);
    assert.ok(pub.addr_info.find((a) => a.local.startsWith("10.0.2."))!.dynamic, `${s.render.server}: the user-mode address is not from DHCP`);
    assert.match(await sh(vm, "ip -4 route show default"), /^default via 10\.0\.2\.2 /m);
    assert.doesNotMatch(await sh(vm, "ip -4 route show default"), new RegExp(`dev ${priv.ifname}\\b`), "a default route over the private network");
    // Each peer's address resolves, over the private NIC, to that peer's private MAC (a TCP
    // attempt makes the guest ask; the peer's firewall may drop the connection itself). All peers
    // at once, in one SSH session: one each took 13 s with five emulated VMs on two cores.
    const peers = vms.servers.filter((o) => o !== s);
    await ssh(vm, `for ip in ${peers.map(addressOf).join(" ")}; do timeout 3 bash -c "exec 3<>/dev/tcp/$ip/22" 2>/dev/null & done; wait; true`);
    const neighbours = JSON.parse(await sh(vm, "ip -j neigh show")) as { dst: string; dev: string; lladdr?: string }[];
    for (const other of peers) {
      const ip = addressOf(other);
      const found = neighbours.filter((n) => n.dst === ip).map((n) => `dev ${n.dev} lladdr ${n.lladdr ?? "-"}`);
      assert.ok(found.includes(`dev ${priv.ifname} lladdr ${other.vm!.privateNic!.mac}`), `${s.render.server} -> ${other.render.server} (${ip}): ${found.join("; ") || "no neighbour entry"}`);
    }
  }
  // The host: no address and no route inside the private network (its packets there take the
  // default route, to a network that is not this one), and nothing answers from it.
  const cidr = vms.render.networkCidr!;
  const hostAddrs = spawnSync("ip", ["-4", "-o", "address", "show", "to", cidr], { encoding: "utf8" });
  assert.equal(hostAddrs.status, 0, hostAddrs.stderr);
  assert.equal(hostAddrs.stdout.trim(), "", `the host has an address in ${cidr}`);
  const dbIp = addressOf(serverOf(vms, "db"));
  const route = spawnSync("ip", ["-4", "route", "get", dbIp], { encoding: "utf8" }).stdout;
  assert.doesNotMatch(route, /\bdev lo\b|local /, route);
  // PostgreSQL answers an SSLRequest with one byte, S or N. Anything else (this machine's egress
  // proxy answers unknown destinations with "HTTP/1.1 ...") is not the db server.
  const answer = await pgSslAnswerFromHost(POSTGRES_PORT, dbIp, 3000);
  assert.ok(answer !== "S" && answer !== "N", `PostgreSQL answered the host at ${dbIp}:${POSTGRES_PORT}`);
}

/**
 * PostgreSQL on db listens on loopback and its private address only; every server running the
 * app reaches it over the private network (TLS offered); db's user-mode (public) address, the
 * host and a port forwarded from the host to 5432 get nothing. Returns the listeners seen.
 */
export async function assertPostgresPrivate(vms: StackVms): Promise<{ listeners: string[]; throughForward: string }> {
  const db = vmOf(vms, "db");
  const dbIp = addressOf(serverOf(vms, "db"));
  const pg = parseSs(await sh(db, "sudo ss -Hltnp"), "tcp").filter((l) => l.process === "postgres");
  assert.ok(pg.some((l) => l.host === dbIp), `PostgreSQL does not listen on ${dbIp}: ${pg.map((l) => l.local).join(", ")}`);
  for (const l of pg) assert.ok(isLoopback(l.host) || l.host === dbIp, `PostgreSQL listens on ${l.local}`);
  for (const s of vms.servers.filter((x) => x.render.runsApp)) {
    assert.equal(await pgSslAnswerFrom(vmOf(vms, s.render.server), dbIp), "S", `${s.render.server} -> ${dbIp}:${POSTGRES_PORT}`);
  }
  const pubIp = (await sh(db, "ip -4 -o addr show to 10.0.2.0/24 | awk '{print $4}' | cut -d/ -f1")).trim();
  assert.equal(await pgSslAnswerFrom(db, pubIp), "", `PostgreSQL answers on db's public address ${pubIp}`);
  // The VMs' public forwards: SSH/HTTP/HTTPS on the host's loopback only, never PostgreSQL...
  for (const s of vms.servers) {
    const netdev = s.vm!.qemuArgs[s.vm!.qemuArgs.indexOf("-netdev") + 1];
    const forwards = [...netdev.matchAll(/hostfwd=tcp:([\d.]+):\d+-:(\d+)/g)].map((m) => `${m[1]}->${m[2]}`);
    assert.deepEqual(forwards.sort(), ["127.0.0.1->22", "127.0.0.1->443", "127.0.0.1->80"], s.render.server);
  }
  // ...and one added by hand to db's 5432 (arriving from 10.0.2.2 like the runner's SSH) gets no answer.
  const [hostPort] = await freePorts(1);
  await addHostForward(db.qmpSocket, hostPort!, POSTGRES_PORT);
  const answer = await pgSslAnswerFromHost(hostPort!);
  assert.equal(answer, "", "PostgreSQL answered through a port forwarded from the host");
  return { listeners: pg.map((l) => l.local), throughForward: answer || "no answer" };
}

/** Web instances only on the web servers, worker instances only on the worker servers, neither elsewhere. */
export async function assertEachServerRunsItsPart(vms: StackVms): Promise<void> {
  const active = async (vm: Vm, pattern: string) =>
    (await sh(vm, `systemctl list-units --plain --no-legend --state=active '${pattern}' | awk '{print $1}'`)).trim().split("\n").filter(Boolean);
  for (const s of vms.servers) {
    const vm = vmOf(vms, s.render.server);
    const web = await active(vm, "web@*");
    const workers = await active(vm, "worker@*");
    if (s.render.roles.includes("web")) assert.ok(web.length > 0, `no web instance on ${s.render.server}`);
    else assert.deepEqual(web, [], `web instances on ${s.render.server}`);
    if (s.render.roles.includes("worker")) assert.ok(workers.includes("worker@1.service"), `no worker@1 on ${s.render.server}: ${workers.join(", ")}`);
    else assert.deepEqual(workers, [], `worker instances on ${s.render.server}`);
  }
}

export interface SignedUp { email: string; password: string; userId: string; orgId: string; token: string }

/**
 * A signup through the site is stored in PostgreSQL on db; verified with SQL on db, the owner
 * logs in through the site. No PostgreSQL server on any server but db (and its read replica's), the
 * client on every server that runs the app.
 */
export async function signupStoredOnDb(vms: StackVms, site: Site, marker: string): Promise<SignedUp> {
  const email = `split-${crypto.randomBytes(4).toString("hex")}@example.com`;
  const password = "a long split-stack e2e password 123";
  const db = vmOf(vms, "db");
  const r = await httpRequest(site.port, {
    host: site.host, method: "POST", path: "/auth/register", body: { email, password, name: marker, organizationName: "Split Org" }, timeoutMs: 60000, agent: false,
  });
  // Signup answers 202 without a session; the address is verified (SQL on db), then the owner logs in.
  assert.equal(r.status, 202, r.body);
  assert.equal(await psql(db, `select count(*) from users where email = '${email}' and name = '${marker}'`), "1");
  const { userId, orgId, token } = await verifyAndLogIn(db, site, email, password);
  await Promise.all(vms.servers.filter((x) => !runsPostgres(x.render.roles)).map(async (s) => {
    const server = await ssh(vmOf(vms, s.render.server), "ls /usr/lib/postgresql/*/bin/postgres /usr/lib/systemd/system/postgresql*.service 2>/dev/null");
    assert.equal(server.stdout.trim(), "", `${s.render.server} has a PostgreSQL server: ${server.stdout}`);
    if (s.render.runsApp) assert.equal((await ssh(vmOf(vms, s.render.server), "command -v psql")).code, 0, `${s.render.server} has no psql client`);
  }));
  return { email, password, userId, orgId, token };
}

/**
 * The signed-up user's welcome email is sent by the worker on its own VM (no token in its
 * journal; `units`: which worker units may log it), and the job is gone from the queue on db.
 */
export async function welcomeMailedByWorker(vms: StackVms, user: SignedUp, units?: string[]): Promise<void> {
  const workers = serversWith(vms, "worker");
  assert.ok(workers.length > 0, "no worker server");
  // Any worker server may take the job: the first to find the mail in its journal.
  assertNoMailToken(await Promise.any(workers.map((w) => waitForWelcomeEmail(vmOf(vms, w.render.server), user.email, undefined, units))));
  assert.equal(await psql(vmOf(vms, "db"), `select count(*) from graphile_worker.jobs where key = 'welcome:${user.userId}'`), "0");
}

/**
 * An upload through the site lands in the host's S3 server (the uploads bucket), reads back
 * through the site, and no VM wrote it to its disk (root filesystem and the data volume; the
 * releases excluded: they predate it). Returns the object's name.
 */
export async function assertUploadInBucketOnly(vms: StackVms, site: Site, bucket: LocalBucket, user: SignedUp): Promise<string> {
  for (const s of serversWith(vms, "web")) {
    assert.doesNotMatch(s.render.files.get("/etc/saas-vps/app.env")!, /^UPLOAD_DIR=/m, `${s.render.server}: app.env keeps an upload directory`);
  }
  const content = `upload-marker-${crypto.randomBytes(16).toString("hex")} ${"x".repeat(20000)}`;
  await Promise.all(vms.servers.map((s) => sh(s.vm!, "touch /tmp/before-upload")));
  const form = new FormData();
  form.append("file", new Blob([content], { type: "text/plain" }), "report.txt");
  const auth = { authorization: `Bearer ${user.token}` };
  const upload = await fetch(siteUrl(site, `/orgs/${user.orgId}/files`), { method: "POST", headers: auth, body: form });
  const uploadBody = await upload.text();
  assert.equal(upload.status, 201, uploadBody);
  const fileId = (JSON.parse(uploadBody) as { file: { id: string } }).file.id;
  const stored = bucket.uploads!.objects();
  assert.deepEqual(stored.map((o) => o.key), [`${user.orgId}/${fileId}`]);
  assert.equal(fs.readFileSync(stored[0]!.file, "utf8"), content);
  const back = await fetch(siteUrl(site, `/orgs/${user.orgId}/files/${fileId}/content`), { headers: auth });
  assert.equal(back.status, 200);
  assert.equal(await back.text(), content);
  const marker = content.split(" ")[0]!;
  // Every VM at once: each search is its own guest's work.
  await Promise.all(vms.servers.map(async (s) => {
    // One sudo, and the marker in two halves joined by the shell inside it: sudo logs its command
    // line to the journal, which would otherwise hold the marker it searches for.
    const [head, tail] = [marker.slice(0, 10), marker.slice(10)];
    const found = await sh(s.vm!, "sudo sh -c 'find / $(mountpoint -q /srv/data && echo /srv/data) -xdev \\( -path /proc -o -path /sys -o -path /srv/app/releases \\) -prune -o " +
      `-type f -newer /tmp/before-upload -print0 | xargs -0 -r grep -l -F "${head}""${tail}" || true'`, 300000);
    assert.equal(found.trim(), "", `${s.render.server} has the upload on its disk: ${found}`);
  }));
  return `${bucket.uploads!.name}/${user.orgId}/${fileId} (${stored[0]!.size} bytes)`;
}

/**
 * The db server's backup and restore-drill timers are on (on db only); a backup run reaches the
 * host's S3 server encrypted, holding `marker` (a row the test wrote), and the drill passes.
 */
export async function assertBackupAndDrill(vms: StackVms, bucket: LocalBucket, opts: { marker: string; secrets: string[]; cacheDir: string }): Promise<Record<string, unknown>> {
  const db = vmOf(vms, "db");
  for (const timer of ["backup.timer", "restore-drill.timer"]) {
    const t = await unitProps(db, timer, ["ActiveState", "UnitFileState"]);
    assert.deepEqual([t.ActiveState, t.UnitFileState], ["active", "enabled"], timer);
  }
  for (const s of vms.servers.filter((x) => !x.render.roles.includes("db"))) {
    assert.equal((await unitProps(vmOf(vms, s.render.server), "backup.timer", ["LoadState"])).LoadState, "not-found", `${s.render.server} has a backup timer`);
  }
  const tb = Date.now();
  const start = await ssh(db, "sudo systemctl start backup.service", { timeoutMs: 10 * 60000 });
  assert.equal(start.code, 0, `backup.service failed:\n${start.stderr}\n${await journalTail(db, "backup.service", 40)}`);
  const backupSeconds = Math.round((Date.now() - tb) / 100) / 10;
  const backupEnv = serverOf(vms, "db").render.files.get("/etc/saas-vps/backup.env")!;
  const stored = await assertBackupInBucket(bucket, backupEnv, opts);
  const td = Date.now();
  const drill = await ssh(db, "sudo systemctl start restore-drill.service", { timeoutMs: 10 * 60000 });
  const drillLog = await sh(db, "sudo journalctl -u restore-drill.service -b -o cat --no-pager");
  assert.equal(drill.code, 0, `restore-drill.service failed:\n${drill.stderr}\n${drillLog}`);
  assert.match(drillLog, /restore drill OK/);
  return {
    backupSeconds, backupObjects: stored.objects, drillSeconds: Math.round((Date.now() - td) / 100) / 10,
    drill: drillLog.split("\n").find((l) => l.includes("restore drill OK")),
  };
}

/** Each server's boot, seconds since the first QEMU start, its VM's memory, and its error's first line. */
export function bootFigures(vms: StackVms): Record<string, unknown> {
  return Object.fromEntries(vms.servers.map((s) => [s.render.server, { ...s.at, memoryMiB: s.vm?.qemuArgs[s.vm.qemuArgs.indexOf("-m") + 1], error: s.error?.message.split("\n")[0] }]));
}

/** Logs one line per server (seconds since the first QEMU start of each step); returns them by server. */
export function logTimings(vms: StackVms, log: (m: string) => void): Record<string, ServerVm["at"]> {
  log("timings, seconds since the first QEMU start:");
  for (const s of vms.servers) {
    log(`  ${s.render.server.padEnd(7)} QEMU ${s.at.qemuStarted ?? "-"}  SSH ${s.at.ssh ?? "-"}  cloud-init done ${s.at.cloudInitDone ?? "-"}  ` +
      `pushes done ${s.at.pushed ?? "-"}  released ${s.at.released ?? "-"}  healthy ${s.at.healthy ?? "-"}`);
  }
  return Object.fromEntries(vms.servers.map((s) => [s.render.server, s.at]));
}

/** What a failure needs to be understood: each started VM's console and journal tails. */
export async function logVmTails(vms: StackVms, log: (m: string) => void, lines: { console: number; journal: number }): Promise<void> {
  for (const s of vms.servers.filter((x) => x.vm)) {
    log(`--- ${s.render.server}: console tail ---\n${consoleTail(s.vm!, lines.console)}`);
    log(`--- ${s.render.server}: journal tail ---\n${await journalTail(s.vm!, undefined, lines.journal)}`);
  }
}

/** nginx for the benchmarks: what the server runs, not the test harness's minimal nginx. */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { renderNginxSite } from "../../provisioning/nginx";

export interface BenchNginx {
  port: number;
  masterPid: number;
  stop(): void;
}

/**
 * Debian's own /etc/nginx/nginx.conf (worker_processes auto, sendfile, gzip, ...) with the rendered
 * site where conf.d/*.conf is included, and its pid, logs and temp paths in `dir`. The test
 * harness's nginx runs 1 worker in a minimal main config; this measures what the server runs.
 * `workerProcesses` overrides `worker_processes auto` when set.
 */
export function startServerNginx(dir: string, webPorts: number[], port: number, workerProcesses?: number): BenchNginx {
  fs.mkdirSync(dir, { recursive: true });
  const site = renderNginxSite({ webPorts, httpPort: port, listenAddress: "127.0.0.1", accessLog: path.join(dir, "access.log") });
  fs.writeFileSync(path.join(dir, "site.conf"), site);
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((n) => `${n}_temp_path ${path.join(dir, `${n}_temp`)};`);
  const debian = fs.readFileSync("/etc/nginx/nginx.conf", "utf8");
  const workers = workerProcesses ? debian.replace(/^worker_processes .*;$/m, `worker_processes ${workerProcesses};`) : debian;
  const main = workers
    .replace(/^pid .*;$/m, `pid ${path.join(dir, "nginx.pid")};`)
    .replace(/^error_log .*;$/m, `error_log ${path.join(dir, "error.log")};`)
    .replace(/access_log \/var\/log\/nginx\/access\.log;/, `access_log ${path.join(dir, "default-access.log")};`)
    .replace("include /etc/nginx/conf.d/*.conf;", `${temp.join(" ")}\n\tinclude ${path.join(dir, "site.conf")};`)
    .replace("include /etc/nginx/sites-enabled/*;", "");
  if (!main.includes(path.join(dir, "site.conf"))) throw new Error("/etc/nginx/nginx.conf has no `include /etc/nginx/conf.d/*.conf;` to put the site in");
  fs.writeFileSync(path.join(dir, "nginx.conf"), main);
  const args = ["-p", dir, "-c", path.join(dir, "nginx.conf")];
  execFileSync("nginx", [...args, "-t", "-q"], { stdio: "pipe" });
  execFileSync("nginx", args, { stdio: "pipe" });
  const masterPid = Number(fs.readFileSync(path.join(dir, "nginx.pid"), "utf8").trim());
  return {
    port,
    masterPid,
    stop() {
      try {
        execFileSync("nginx", [...args, "-s", "stop"], { stdio: "ignore" });
      } catch {
        /* already gone */
      }
    },
  };
}

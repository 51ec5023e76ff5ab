/**
 * The day-2 pushes the VM runner replays (no VM needed, so not tagged @vm): renderStack reads
 * them from the program under Pulumi mocks, one for one, in the order the program registers
 * them, and a server's files are its user-data's plus its pushed ones.
 */
import { strict as assert } from "node:assert";
import * as pulumi from "@pulumi/pulumi";
import { isWrappedSecret, unwrapSecrets } from "../../cli/lib/pulumiMocks";
import { decodeWriteFiles, pushedFileOf, pushedPathOf, readStackFile, renderStack, serverFiles, type StackRender } from "../../cli/lib/renderStack";
import { stackFilePath } from "../../cli/lib/stacks";
import { renderPushCommand } from "../../provisioning/push";

const REMOTE_COMMAND = "command:remote:Command";

for (const stack of ["staging", "prod"]) {
  describe(`day-2 pushes of stack ${stack} as renderStack records them`, function () {
    this.timeout(60000);
    let render: StackRender;
    before(async () => {
      render = await renderStack(stack, readStackFile(stackFilePath(stack)));
    });

    it("are the program's push resources, one for one, with their exact command and stdin", () => {
      const commands = render.mocks.ofType(REMOTE_COMMAND);
      const pushes = render.servers.flatMap((s) => s.pushes);
      assert.ok(pushes.length > 0, "no pushes recorded");
      // Every remote command is a push of exactly one server, except the app release.
      const notPushed = commands.filter((c) => !pushes.some((p) => p.resourceName === c.name)).map((c) => c.name);
      assert.deepEqual(notPushed, [`saas-${stack}-app-app-release`]);
      assert.equal(new Set(pushes.map((p) => p.resourceName)).size, pushes.length, "a resource recorded twice");
      for (const push of pushes) {
        const resource = commands.find((c) => c.name === push.resourceName)!;
        assert.equal(push.command, unwrapSecrets(resource.inputs.create));
        assert.equal(push.stdin, unwrapSecrets(resource.inputs.stdin));
        assert.equal(push.secret, isWrappedSecret(resource.inputs.stdin), `${push.path}: secret flag`);
        // The path read back from the command is the one its resource is named after.
        assert.equal(push.resourceName, `saas-${stack}-app-push${push.path.replace(/[^A-Za-z0-9]+/g, "-")}`);
      }
    });

    it("come in the order the program registers them (what `pulumi up` starts them in)", async () => {
      // An independent run records registration order with a transformation on every resource.
      const order: string[] = [];
      const { createProgram } = await import("../../program/program");
      const { RecordingMocks, valueOf } = await import("../../cli/lib/pulumiMocks");
      const file = readStackFile(stackFilePath(stack));
      await pulumi.runtime.setMocks(new RecordingMocks(), "saas-vps", stack, false);
      pulumi.runtime.setAllConfig(file.config, file.secretKeys);
      const outputs = createProgram(stack, { transformations: [(a) => { order.push(a.name); return undefined; }] });
      await Promise.all([valueOf(outputs.ipv6), valueOf(outputs.userDataBytes)]);
      await pulumi.runtime.disconnect();
      const names = render.servers[0].pushes.map((p) => p.resourceName);
      assert.deepEqual(names, order.filter((n) => names.includes(n)));
    });

    it("make the server's files: the user-data's files plus every pushed file", () => {
      for (const server of render.servers) {
        const fromUserData = decodeWriteFiles(server.userData);
        const pushed = new Map(server.pushes.map((p) => [p.path, p.stdin]));
        assert.deepEqual([...server.files.keys()].sort(), [...new Set([...fromUserData.keys(), ...pushed.keys()])].sort());
        for (const [path, content] of server.files) assert.equal(content, pushed.get(path) ?? fromUserData.get(path), path);
        assert.deepEqual(server.pushOnly, [...pushed.keys()].filter((p) => !fromUserData.has(p)));
        // A file in both is pushed with what first boot wrote: the first push changes nothing.
        for (const [path, content] of pushed) {
          if (fromUserData.has(path)) assert.equal(content, fromUserData.get(path), `${path}: push differs from first boot`);
        }
      }
    });
  });
}

describe("serverFiles and pushedFileOf", () => {
  const push = (path: string, stdin: string) => ({
    resourceName: `x-push${path}`, path, mode: "0644", command: renderPushCommand({ path, content: stdin, mode: "0644" }), stdin, secret: false,
  });

  it("adds a file that arrives only by push, and lets a push's content win over first boot's", () => {
    const r = serverFiles(new Map([["/etc/a", "first boot"], ["/etc/b", "b"]]), [push("/usr/local/sbin/release", "tool"), push("/etc/a", "pushed")]);
    assert.deepEqual([...r.files], [["/etc/a", "pushed"], ["/etc/b", "b"], ["/usr/local/sbin/release", "tool"]]);
    assert.deepEqual(r.pushOnly, ["/usr/local/sbin/release"]);
  });

  it("reads the destination and mode back from renderPushCommand, quotes and newlines in the script included", () => {
    for (const path of ["/etc/saas-vps/app.env", "/etc/it's here/x.conf", "/srv/a b/c"]) {
      assert.equal(pushedPathOf(renderPushCommand({ path, content: "x\n", mode: "0600", onChange: "echo 'reloaded'\nsystemctl reload nginx" })), path);
    }
    assert.deepEqual(pushedFileOf(renderPushCommand({ path: "/usr/local/sbin/release", content: "x\n", mode: "0755", owner: "root:root" })), { path: "/usr/local/sbin/release", mode: "0755" });
  });

  it("refuses a command that is not a push", () => {
    assert.throws(() => pushedPathOf("sudo /usr/local/sbin/release /srv/app/artifacts/x.tar.gz"), /not a day-2 push command/);
    assert.throws(() => pushedPathOf("sudo sh -c 'echo unterminated"), /not a day-2 push command/);
  });
});

/** `npm run vm` on a bad command line (no VM needed, so not tagged @vm): what is wrong, the usage text, exit 2. */
import { strict as assert } from "node:assert";
import { PROJECT_DIR } from "../../cli/lib/stacks";
import { run } from "../support/tools";

const vm = (...args: string[]) => run("npm", ["run", "-s", "vm", "--", ...args], { cwd: PROJECT_DIR });

describe("npm run vm: command line", function () {
  this.timeout(60000);

  for (const [args, message] of [
    [["--stak", "staging"], /^vm: Unknown option '--stak'/],
    [["--stack"], /^vm: Option '--stack <value>' argument missing/],
    [["ssh", "ls"], /^vm: unexpected argument ls$/m],
    [["status", "--", "ls"], /^vm: only ssh takes a command after --; got ls$/m],
    [["--stack", "staging", "--memory", "2g"], /^vm: --memory must be a positive whole number; got "2g"$/m],
    [["--stack", "staging", "--accel", "hvf"], /^vm: --accel is tcg or kvm; got "hvf"$/m],
    [["--stack", "separated", "--server", "db"], /^vm: --server is for ssh, status and stop; start boots the stack's servers \(--servers A,B,\.\.\. some of them\)$/m],
    [["start", "--user-data", "x.yaml", "--server", "db"], /^vm: --server is for a stack's VMs \(with --stack\)$/m],
    [["start", "--user-data", "x.yaml", "--servers", "db"], /^vm: --servers is for a stack's VMs \(with --stack\)$/m],
    [["--stack", "scaled", "--servers", "app,,db"], /^vm: --servers is a comma-separated list of server names; got "app,,db"$/m],
    [["--stack", "scaled", "--servers", "app,app-3"], /^vm: --servers: no server app-3 in stack scaled; its servers are app, app-2, worker, db, cache$/m],
  ] as const) {
    it(`refuses ${args.join(" ")} before doing anything`, () => {
      const r = vm(...args);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /^usage:\n {2}npm run vm -- --stack NAME/m);
    });
  }

  it("names the stacks that exist for a stack without a stack file", () => {
    const r = vm("--stack", "nope");
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^vm: no stack file Pulumi\.nope\.yaml; stacks here: managed, prod, scaled, separated, staging$/m);
  });
});

/**
 * The stage change mvp → separated, as the components see it: the same stack evaluated at both
 * stages under mocks. Nothing the mvp stack runs on may be replaced or deleted by the change: no
 * resource of the mvp run may lose its URN (name, type and parent, or an alias of it) or see an
 * input change that makes its provider replace it (components/replaceInputs.ts).
 */
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { MOCK_DEFAULT_VPC_RANGE, RecordingMocks, unwrapSecrets } from "../../cli/lib/pulumiMocks";
import { decodeWriteFiles } from "../../cli/lib/renderStack";
import { cidrContains } from "../../config/validators";
import { HOST_FIREWALL_PATH } from "../../provisioning/hostFirewall";
import { replaceInputsOf } from "../../components/replaceInputs";
import { KEYS } from "../../config/keys";
import { minimalRaw, separatedRaw } from "../support/fixtures";
import { runProgram, type MockRun } from "../support/mockProgram";
import { byUrn, isCommand, isComponent } from "../support/urns";

/**
 * A running mvp stack moves with a key that keeps its own database live until the data has moved
 * (README: Moving from mvp to separated); where this tree has that key, the change sets it.
 */
const MOVE_KEY = "mvpDatabase";
const MOVING: Record<string, string> = MOVE_KEY in KEYS ? { [MOVE_KEY]: "live" } : {};

for (const provider of ["hetzner", "digitalocean"] as const) {
  describe(`stage change mvp → separated under mocks: ${provider}`, function () {
    let mvp: MockRun;
    let separated: MockRun;
    let mvpUrns: Awaited<ReturnType<typeof byUrn>>;
    let separatedUrns: Awaited<ReturnType<typeof byUrn>>;
    const secrets = undefined;

    before(async () => {
      mvp = await runProgram(minimalRaw(provider), secrets);
      mvpUrns = await byUrn(mvp);
      separated = await runProgram({ ...minimalRaw(provider), ...separatedRaw(provider), ...MOVING }, secrets);
      separatedUrns = await byUrn(separated);
    });

    it("keeps the app server and adds the db server", () => {
      const servers = (run: MockRun) => run.mocks.resources.filter((r) => r.type.endsWith("/server:Server") || r.type.endsWith("/droplet:Droplet")).map((r) => r.name).sort();
      assert.deepEqual(servers(mvp), ["saas-test-app-server"]);
      // The worker's own server comes with the move's last step when the move holds it back.
      const expected = ["saas-test-app-server", "saas-test-db-server", "saas-test-worker-server"];
      assert.deepEqual(servers(separated).filter((name) => !expected.includes(name)), []);
      for (const name of ["saas-test-app-server", "saas-test-db-server"]) assert.ok(servers(separated).includes(name), `no ${name}`);
    });

    it("replaces nothing the mvp stack has: every resource keeps its URN and every replace-forcing input", () => {
      const changed: string[] = [];
      for (const old of mvp.mocks.resources.filter((r) => !isCommand(r) && !isComponent(r))) {
        const kept = separatedUrns.resolve.get(mvpUrns.urns.get(old)!);
        if (!kept) continue; // disappearances: the next test
        const ignored = ((separated.options.get(kept.name) as pulumi.CustomResourceOptions | undefined)?.ignoreChanges ?? []) as string[];
        for (const input of replaceInputsOf(old.type)) {
          if (ignored.includes(input)) continue;
          const [was, is] = [unwrapSecrets(old.inputs[input]), unwrapSecrets(kept.inputs[input])];
          if (JSON.stringify(was) !== JSON.stringify(is)) changed.push(`${old.name}.${input}: ${JSON.stringify(was)} → ${JSON.stringify(is)}`);
        }
      }
      assert.deepEqual(changed, []);
    });

    it("deletes nothing the mvp stack runs on, its data volume included while the move keeps it", function () {
      const gone = mvp.mocks.resources.filter((r) => !isCommand(r) && !isComponent(r) && !separatedUrns.resolve.has(mvpUrns.urns.get(r)!)).map((r) => r.name);
      // The all-in-one server's data volume holds the running database until the data has moved;
      // keeping it is the move's plan (plan/plan.ts), which this tree may not have yet.
      const dataVolume = ["saas-test-app-app-data", "saas-test-app-app-data-attach"];
      if (!(MOVE_KEY in KEYS) && gone.length > 0 && gone.every((name) => dataVolume.includes(name))) {
        console.warn(`      SKIPPED: this tree has no saas-vps:${MOVE_KEY} yet, and without it the separated plan drops ${gone.join(", ")} (Pulumi refuses to delete the protected volume)`);
        this.skip();
      }
      assert.deepEqual(gone, []);
    });

    it("keeps every protected resource protected, the generated secrets included", () => {
      const guarded = mvp.mocks.resources.filter((r) => mvp.options.get(r.name)?.protect === true);
      assert.ok(guarded.some((r) => r.type.startsWith("random:")), "no generated secret is protected at mvp");
      const lost = guarded
        .filter((r) => separated.options.get(separatedUrns.resolve.get(mvpUrns.urns.get(r)!)?.name ?? "")?.protect !== true)
        .map((r) => r.name);
      assert.deepEqual(lost, []);
    });

    if (provider === "digitalocean") {
      it("keeps the VPC the mvp server's own component made before the stack had one VPC (an alias names its old URN)", () => {
        const vpc = separated.mocks.ofType("digitalocean:index/vpc:Vpc");
        assert.equal(vpc.length, 1);
        const legacy = "urn:pulumi:test::saas-vps::saas-vps:stack:SaasStack$saas-vps:server:VpsServer$digitalocean:index/vpc:Vpc::saas-test-app-vpc";
        assert.equal(separatedUrns.resolve.get(legacy), vpc[0]);
        for (const droplet of separated.mocks.ofType("digitalocean:index/droplet:Droplet")) assert.equal(droplet.inputs.vpcUuid, vpc[0].id);
      });
    }
  });
}

describe("stage change on DigitalOcean: a VPC whose range DigitalOcean chose at mvp", function () {
  /** Answers like the provider refreshing a VPC made at mvp: its range is the one DigitalOcean picked, whatever the program asks. */
  class MvpVpcMocks extends RecordingMocks {
    override newResource(args: pulumi.runtime.MockResourceArgs) {
      const vpc = args.type === "digitalocean:index/vpc:Vpc";
      return super.newResource(vpc ? { ...args, inputs: { ...args.inputs, ipRange: undefined } } : args);
    }
  }
  let run: MockRun;
  const warnings: string[] = [];
  const warn = pulumi.log.warn;

  before(async () => {
    pulumi.log.warn = async (message: string) => void warnings.push(message);
    try {
      run = await runProgram({ ...minimalRaw("digitalocean"), stage: "separated" }, [], "test", new MvpVpcMocks());
    } finally {
      pulumi.log.warn = warn;
    }
  });

  it("renders every server for the VPC's real range, not the configured one", () => {
    const db = run.mocks.resources.find((r) => r.name === "saas-test-db-server")!;
    const nft = decodeWriteFiles(unwrapSecrets(db.inputs.userData)).get(HOST_FIREWALL_PATH)!;
    const rule = nft.split("\n").find((line) => /tcp dport 5432\b/.test(line));
    assert.match(rule ?? "", new RegExp(`ip saddr \\{ ${MOCK_DEFAULT_VPC_RANGE.replace(/\./g, "\\.")} \\}`));
    for (const name of ["app", "worker", "db"]) {
      const droplet = run.mocks.resources.find((r) => r.name === `saas-test-${name}-server`)!;
      assert.ok(cidrContains(MOCK_DEFAULT_VPC_RANGE, droplet.state.ipv4AddressPrivate), `${name} is outside the VPC's range`);
    }
  });

  it("warns once, naming the key and both ranges", () => {
    // The fixture serves plain HTTP, which is warned about too; the VPC's range is warned about once.
    const vpcWarnings = warnings.filter((w) => !w.startsWith("saas-vps:plainHttp"));
    assert.equal(vpcWarnings.length, 1, `warnings: ${JSON.stringify(warnings)}`);
    assert.match(vpcWarnings[0], /^saas-vps:privateNetworkCidr: .*10\.110\.16\.0\/20.*10\.20\.0\.0\/16/);
  });
});

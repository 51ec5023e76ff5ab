/**
 * The policy pack as the Pulumi CLI starts it: `@pulumi/pulumi/cmd/run-policy-pack` on the policy/
 * folder (TypeScript through ts-node, policy/tsconfig.json), which serves the analyzer protocol
 * and prints its port; this test then speaks that protocol as the engine does (Analyze with a
 * resource's type, inputs, URN and options). It proves the pack loads with the project's
 * node_modules and reports a violation; the rules themselves are tested in policies.test.ts.
 * The pack runs in its own process: one PolicyPack per process is all @pulumi/policy allows.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Struct } from "google-protobuf/google/protobuf/struct_pb";
import { AnalyzerClient } from "@pulumi/pulumi/proto/analyzer_grpc_pb";
import { AnalyzeRequest, AnalyzerResourceOptions, type AnalyzeResponse } from "@pulumi/pulumi/proto/analyzer_pb";

const ROOT = join(__dirname, "..", "..");
const POLICY_DIR = join(ROOT, "policy");

describe("policy pack: loaded as the Pulumi CLI loads it, over the analyzer protocol", function () {
  // ts-node type-checks the pack and everything it imports: minutes on a loaded 2-core machine.
  this.timeout(400_000);
  let pack: ChildProcess;
  let client: AnalyzerClient;
  let stderr = "";

  before(async () => {
    pack = spawn(process.execPath, [join(ROOT, "node_modules", "@pulumi", "pulumi", "cmd", "run-policy-pack"), "127.0.0.1:1", POLICY_DIR], { cwd: POLICY_DIR, stdio: ["ignore", "pipe", "pipe"] });
    pack.stderr!.on("data", (chunk) => (stderr += chunk));
    const port = await new Promise<string>((resolve, reject) => {
      let out = "";
      pack.stdout!.on("data", (chunk) => {
        out += chunk;
        const line = /^(\d+)\n/.exec(out);
        if (line) resolve(line[1]);
      });
      pack.on("exit", (code) => reject(new Error(`the policy pack exited ${code} before serving: ${stderr}`)));
    });
    client = new AnalyzerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  after(() => {
    client?.close();
    if (pack && pack.exitCode === null) pack.kill();
  });

  function analyze(type: string, props: Record<string, unknown>, protect: boolean): Promise<AnalyzeResponse> {
    const name = "saas-prod-app-thing";
    const request = new AnalyzeRequest()
      .setType(type)
      .setName(name)
      .setUrn(`urn:pulumi:prod::saas-vps::saas-vps:stack:SaasStack$${type}::${name}`)
      .setProperties(Struct.fromJavaScript(props as never))
      .setOptions(new AnalyzerResourceOptions().setProtect(protect));
    return new Promise((resolve, reject) => client.analyze(request, (err, response) => (err ? reject(err) : resolve(response))));
  }

  it("reports a firewall rule opening PostgreSQL to the world, as a mandatory violation", async () => {
    const response = await analyze("hcloud:index/firewall:Firewall", { rules: [{ direction: "in", protocol: "tcp", port: "5432", sourceIps: ["0.0.0.0/0"] }] }, false);
    const diagnostics = response.getDiagnosticsList().map((d) => ({ policy: d.getPolicyname(), pack: d.getPolicypackname(), message: d.getMessage() }));
    assert.equal(diagnostics.length, 1, JSON.stringify(diagnostics));
    assert.equal(diagnostics[0].policy, "private-ports-not-public");
    assert.equal(diagnostics[0].pack, "saas-vps");
    assert.match(diagnostics[0].message, /opens 5432 to the world/);
  });

  it("passes a protected Hetzner volume with delete protection, and reports it unprotected", async () => {
    assert.deepEqual((await analyze("hcloud:index/volume:Volume", { deleteProtection: true, size: 20 }, true)).getDiagnosticsList(), []);
    const unprotected = (await analyze("hcloud:index/volume:Volume", { deleteProtection: true, size: 20 }, false)).getDiagnosticsList();
    assert.deepEqual(unprotected.map((d) => d.getPolicyname()), ["protected-kinds-are-protected"]);
  });
});

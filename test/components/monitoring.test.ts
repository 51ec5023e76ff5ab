/**
 * The stack watched from outside (components/monitoring.ts, plan/monitoring.ts) under Pulumi
 * mocks, on both providers: the check follows the site's URL, the certificate alert comes with a
 * domain, the webhook route stays a secret in every input that carries it, thresholds reach the
 * policies, and `monitoring: none` declares nothing. The parity contract's share of it is in
 * stack.test.ts.
 */
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "../../config/config";
import { unwrapSecrets, valueOf } from "../../cli/lib/pulumiMocks";
import { ALERT_EMAIL, minimalRaw, withDomain } from "../support/fixtures";
import { clearPaths, runProgram, type MockRun } from "../support/mockProgram";

const UPTIME_CHECK = "digitalocean:index/uptimeCheck:UptimeCheck";
const UPTIME_ALERT = "digitalocean:index/uptimeAlert:UptimeAlert";
const MONITOR_ALERT = "digitalocean:index/monitorAlert:MonitorAlert";
const WEBHOOK = "https://hooks.slack.com/services/T000/B000/secret-part";

function one(run: MockRun, type: string) {
  const found = run.mocks.ofType(type);
  assert.equal(found.length, 1, `expected one ${type}, got ${found.length}`);
  return found[0];
}

for (const provider of ["hetzner", "digitalocean"] as const) {
  describe(`watching from outside under Pulumi mocks: ${provider}`, function () {
    describe("with a domain, alerts to a webhook and an address", function () {
      let run: MockRun;
      before(async () => {
        run = await runProgram({ ...withDomain(minimalRaw(provider), "shop.example.org"), alertWebhookUrl: WEBHOOK, alertSlackChannel: "#ops", alertCertificateDays: "10" });
      });

      it("checks https://<domain>/health, so DigitalOcean also reads the certificate", async () => {
        const check = one(run, UPTIME_CHECK);
        assert.equal(check.inputs.target, "https://shop.example.org/health");
        assert.equal(check.inputs.type, "https");
        assert.equal(await valueOf(run.outputs.healthCheckUrl!), "https://shop.example.org/health");
        assert.equal(await pulumi.isSecret(run.outputs.healthCheckUrl!), false);
      });

      it("alerts when the site is down from every region, and when the certificate expires within the days set", () => {
        const check = one(run, UPTIME_CHECK);
        const alerts = run.mocks.ofType(UPTIME_ALERT).map((a) => unwrapSecrets(a.inputs));
        assert.deepEqual(
          alerts.map((a) => [a.type, a.checkId, a.threshold, a.comparison, a.period]),
          [
            ["down_global", check.id, undefined, undefined, "3m"],
            ["ssl_expiry", check.id, 10, "less_than", "5m"],
          ],
        );
      });

      it("sends every alert to the one route: the address and the webhook as a Slack channel", () => {
        const route = { emails: [ALERT_EMAIL], slacks: [{ channel: "#ops", url: WEBHOOK }] };
        for (const alert of run.mocks.ofType(UPTIME_ALERT)) assert.deepEqual(unwrapSecrets(alert.inputs.notifications), [route]);
        const policies = run.mocks.ofType(MONITOR_ALERT);
        assert.equal(policies.length, provider === "digitalocean" ? 3 : 0);
        for (const policy of policies) assert.deepEqual(unwrapSecrets(policy.inputs.alerts), route);
      });

      it("keeps the webhook URL a secret in every resource input that carries it", () => {
        const carriers = run.mocks.resources.filter((r) => JSON.stringify(unwrapSecrets(r.inputs)).includes("secret-part"));
        // Every alert carries it (and the backup env file's push, for backup failures).
        assert.ok(carriers.filter((r) => r.type === UPTIME_ALERT || r.type === MONITOR_ALERT).length === (provider === "digitalocean" ? 5 : 2));
        for (const resource of carriers) assert.deepEqual(clearPaths(resource.inputs, "secret-part"), [], `${resource.name} holds the webhook in clear`);
      });
    });

    it("takes the thresholds from the stack config", async () => {
      const extra: Record<string, string> = provider === "digitalocean" ? { alertCpuPercent: "75", alertMemoryPercent: "80", alertDiskPercent: "70" } : {};
      const run = await runProgram({ ...minimalRaw(provider), ...extra });
      const values = run.mocks.ofType(MONITOR_ALERT).map((p) => [p.inputs.type, p.inputs.value]);
      assert.deepEqual(
        values,
        provider === "digitalocean"
          ? [
              ["v1/insights/droplet/cpu", 75],
              ["v1/insights/droplet/memory_utilization_percent", 80],
              ["v1/insights/droplet/disk_utilization_percent", 70],
            ]
          : [],
      );
    });

    it("with monitoring none declares no check and no alert, and exports no health check URL", async () => {
      const { alertEmails: _alertEmails, ...raw } = minimalRaw(provider);
      const run = await runProgram({ ...raw, monitoring: "none" });
      for (const type of [UPTIME_CHECK, UPTIME_ALERT, MONITOR_ALERT]) assert.deepEqual(run.mocks.ofType(type), [], type);
      assert.equal(run.outputs.healthCheckUrl, undefined);
    });

    it("refuses a stack without a route before declaring anything, naming the key", async () => {
      const { alertEmails: _alertEmails, ...raw } = minimalRaw(provider);
      await assert.rejects(runProgram(raw), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /^saas-vps:monitoring: is digitalocean \(the default\), which checks the site and alerts, but no alert route is set/m);
        return true;
      });
    });
  });
}

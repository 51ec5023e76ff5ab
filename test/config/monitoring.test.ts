/**
 * Who watches the stack and where alerts go (config/config.ts parseMonitoring, config/monitoring.ts):
 * watching is the default, so a stack names a route or says `monitoring: none`, which is warned
 * about; every refused value is one line naming its key.
 */
import assert from "node:assert/strict";
import { configWarnings, parseStackConfig } from "../../config/config";
import { ALERT_EMAIL, minimalRaw, withDomain } from "../support/fixtures";
import { configProblems } from "../support/configProblems";


/** minimalRaw without its alert route. */
function withoutRoute(provider: "hetzner" | "digitalocean" = "hetzner"): Record<string, string> {
  const { alertEmails: _alertEmails, ...raw } = minimalRaw(provider);
  return raw;
}

const WEBHOOK = "https://hooks.slack.com/services/T000/B000/XXXX";
const NO_ROUTE =
  "saas-vps:monitoring: is digitalocean (the default), which checks the site and alerts, but no alert route is set: set saas-vps:alertEmails (addresses verified on the DigitalOcean account) and/or saas-vps:alertWebhookUrl (a Slack incoming webhook), or turn watching off with saas-vps:monitoring: none";

describe("stack config: monitoring and alert routes", () => {
  it("watches by default, to the addresses given, with the documented thresholds", () => {
    for (const provider of ["hetzner", "digitalocean"] as const) {
      assert.deepEqual(parseStackConfig(minimalRaw(provider)).monitoring, {
        service: "digitalocean",
        route: { emails: [ALERT_EMAIL] },
        thresholds: { cpuPercent: 90, memoryPercent: 90, diskPercent: 85, certificateDays: 14 },
      });
    }
  });

  it("routes alerts to alertWebhookUrl as a Slack webhook, in the default channel or the one named", () => {
    const viaWebhook = parseStackConfig({ ...withoutRoute(), alertWebhookUrl: WEBHOOK });
    assert.equal(viaWebhook.monitoring.service, "digitalocean");
    assert.deepEqual(viaWebhook.monitoring.service === "digitalocean" && viaWebhook.monitoring.route, { emails: [], slack: { url: WEBHOOK, channel: "#alerts" } });
    const both = parseStackConfig({ ...minimalRaw("digitalocean"), alertWebhookUrl: WEBHOOK, alertSlackChannel: "#ops", alertCpuPercent: "75", alertDiskPercent: "70" });
    assert.deepEqual(both.monitoring, {
      service: "digitalocean",
      route: { emails: [ALERT_EMAIL], slack: { url: WEBHOOK, channel: "#ops" } },
      thresholds: { cpuPercent: 75, memoryPercent: 90, diskPercent: 70, certificateDays: 14 },
    });
    const withCertificate = parseStackConfig({ ...withDomain(minimalRaw()), alertCertificateDays: "7" });
    assert.equal(withCertificate.monitoring.service === "digitalocean" && withCertificate.monitoring.thresholds.certificateDays, 7);
  });

  it("takes none only as an explicit choice, and warns about it loudly; a watched stack gets no such warning", () => {
    const none = parseStackConfig({ ...withoutRoute(), monitoring: "none" });
    assert.deepEqual(none.monitoring, { service: "none" });
    const warnings = configWarnings(none);
    assert.equal(warnings.filter((w) => w.startsWith("saas-vps:monitoring is none: NOTHING watches this stack")).length, 1, warnings.join("\n"));
    assert.deepEqual(configWarnings({ ...parseStackConfig(minimalRaw()), plainHttp: false }), []);
  });

  const table: Array<[string, Record<string, string | undefined>, string[]]> = [
    ["a watched stack without a route", { alertEmails: undefined }, [NO_ROUTE]],
    ["an address that is not in a list", { alertEmails: "ops@example.org" }, ['saas-vps:alertEmails: must be a JSON list of email addresses, e.g. ["ops@example.com"]; got "ops@example.org"']],
    ["a list entry that is no address", { alertEmails: JSON.stringify(["ops@example.org", "pager"]) }, ['saas-vps:alertEmails: entry 1: "pager" is not an email address']],
    ["an empty list", { alertEmails: "[]" }, ['saas-vps:alertEmails: must list at least one entry, or be left unset; set a JSON list of email addresses, e.g. ["ops@example.com"]']],
    ["a webhook that is not a URL as the only route", { alertEmails: undefined, alertWebhookUrl: "hooks.slack.com/x" }, ["saas-vps:alertWebhookUrl: must be an http(s) URL that accepts a JSON POST; got a value that is not one"]],
    ["an unknown service", { monitoring: "uptimerobot" }, ['saas-vps:monitoring: "uptimerobot" is not allowed; use one of digitalocean, none']],
    ["a route key with monitoring none", { monitoring: "none" }, ["saas-vps:alertEmails: is only for saas-vps:monitoring digitalocean; monitoring is none, so nothing would use it: remove the key or set monitoring to digitalocean"]],
    ["a channel without the webhook", { alertSlackChannel: "#ops" }, ["saas-vps:alertSlackChannel: is the channel of DigitalOcean's alerts to saas-vps:alertWebhookUrl, which is unset: set alertWebhookUrl or remove the key"]],
    ["a channel with a line break", { alertWebhookUrl: WEBHOOK, alertSlackChannel: "#ops\nx" }, ['saas-vps:alertSlackChannel: must be a Slack channel name of 1 to 80 characters without control characters, such as #ops; got "#ops\\nx"']],
    ["CPU at 100 %", { provider: "digitalocean", backupAccessKeyId: undefined, backupSecretAccessKey: undefined, alertCpuPercent: "100" }, ['saas-vps:alertCpuPercent: must be a whole number from 1 to 99; got "100"']],
    ["memory at 0 %", { provider: "digitalocean", backupAccessKeyId: undefined, backupSecretAccessKey: undefined, alertMemoryPercent: "0" }, ['saas-vps:alertMemoryPercent: must be a whole number from 1 to 99; got "0"']],
    ["a fractional disk threshold", { provider: "digitalocean", backupAccessKeyId: undefined, backupSecretAccessKey: undefined, alertDiskPercent: "85.5" }, ['saas-vps:alertDiskPercent: must be a whole number from 1 to 99; got "85.5"']],
    ["a resource alert on Hetzner", { alertMemoryPercent: "80" }, ["saas-vps:alertMemoryPercent: is for provider digitalocean only: DigitalOcean's resource alerts watch droplets, and Hetzner Cloud has no alerting API; remove the key"]],
    ["a certificate threshold without a domain", { alertCertificateDays: "7" }, ["saas-vps:alertCertificateDays: is only for a stack with saas-vps:domain: without one the site has no certificate to expire; remove the key"]],
    ["a certificate threshold at certbot's renewal", { plainHttp: undefined, domain: "shop.example.org", acmeEmail: "ops@example.org", alertCertificateDays: "30" }, ['saas-vps:alertCertificateDays: must be a whole number from 1 to 29; got "30"']],
  ];
  for (const [title, fragment, expected] of table) {
    it(`rejects ${title}, naming the key`, () => {
      const raw: Record<string, string> = { ...minimalRaw("hetzner") };
      for (const [k, v] of Object.entries(fragment)) {
        if (v === undefined) delete raw[k];
        else raw[k] = v;
      }
      assert.deepEqual(configProblems(raw), expected);
    });
  }
});

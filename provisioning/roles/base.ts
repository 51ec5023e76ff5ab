/**
 * What every server gets, whatever its roles: the base system files (SSH, journald, upgrades,
 * fail2ban), the packages they need, and the first boot itself: the bootstrap driver, the
 * step scripts of the server's roles and the bootstrap.env that lists them.
 */
import { BOOTSTRAP_PATH } from "../cloudInit";
import type { RenderedFile } from "../files";
import { renderHostFirewallFiles, HOST_FIREWALL_UNIT, type HostFirewallRule } from "../hostFirewall";
import { ADMIN_USER, BOOTSTRAP_ENV_FILE, BOOTSTRAP_STEP_DIR, STATE_DIR } from "../layout";
import { loadScript } from "../scripts";
import { renderSystemFiles } from "../system";
import { stepFile, type RoleContribution } from "./contribution";

export interface BaseInput {
  /** The stack's admin keys: cloud-init installs them on first boot, the push on every change. */
  sshPublicKeys: string[];
  /** The server's planned inbound rules (the cloud firewall's): the host firewall enforces them too. */
  firewall: HostFirewallRule[];
}

export function renderBase(input: BaseInput): RoleContribution {
  return {
    files: [...renderSystemFiles(), ...renderHostFirewallFiles(input.firewall), adminKeysFile(input.sshPublicKeys)],
    // curl for the operator (and every health check); python3-systemd for fail2ban's journal backend;
    // needrestart restarts what a security upgrade patched (provisioning/system.ts).
    packages: ["ca-certificates", "curl", "fail2ban", "needrestart", "nftables", "python3-systemd", "unattended-upgrades"],
    steps: ["80-system-settings", "90-enable-units"],
    units: ["fail2ban", HOST_FIREWALL_UNIT, "unattended-upgrades"],
    settings: { STATE_DIR, STEP_DIR: BOOTSTRAP_STEP_DIR },
  };
}

/**
 * The admin's authorized_keys as a file of its own, so that changing `sshPublicKeys` reaches a
 * running server (both providers only read a server's SSH keys when they create it, and the
 * server ignores changes to them rather than being replaced). It replaces the whole file, so a
 * key removed from the stack loses access.
 */
function adminKeysFile(sshPublicKeys: string[]): RenderedFile {
  return {
    path: `/home/${ADMIN_USER}/.ssh/authorized_keys`,
    content: sshPublicKeys.map((k) => `${k}\n`).join(""),
    mode: "0600",
    owner: `${ADMIN_USER}:${ADMIN_USER}`,
  };
}

/** The driver, the steps the server's parts list, and bootstrap.env, from the server's summed parts. */
export function renderFirstBootFiles(sum: RoleContribution): RenderedFile[] {
  return [
    { path: BOOTSTRAP_PATH, content: loadScript("server/bootstrap"), mode: "0755", onChange: BOOTSTRAP_PATH },
    ...sum.steps.map(stepFile),
    { path: BOOTSTRAP_ENV_FILE, content: renderBootstrapEnv(sum), mode: "0644", onChange: BOOTSTRAP_PATH },
  ];
}

/** Sourced by bash: KEY="value" lines, so a value must not be able to end the quotes or expand. */
export function renderBootstrapEnv(sum: RoleContribution): string {
  const settings: Array<[string, string]> = [
    ["STEPS", sum.steps.join(" ")],
    ["ENABLE_UNITS", sum.units.join(" ")],
    ["ENABLE_ONLY_UNITS", (sum.unitsStartedByPush ?? []).join(" ")],
    ...Object.entries(sum.settings).sort(([a], [b]) => a.localeCompare(b)),
  ];
  for (const [key, value] of settings) {
    if (/["$`\\\r\n]/.test(value)) throw new Error(`bootstrap.env ${key}: ${JSON.stringify(value)} would break out of its double quotes`);
  }
  return [
    "# Rendered by saas-vps: settings for bootstrap, its steps and tls-issue (no secrets here).",
    ...settings.map(([k, v]) => `${k}="${v}"`),
    "",
  ].join("\n");
}

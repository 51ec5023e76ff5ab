/**
 * Unit files and the sandbox every service we render shares. Apart from the app's units
 * (systemd.ts), so that the release's migrate unit (release.ts) runs in the same sandbox as
 * the app's processes without the two modules importing each other.
 * Hardening: https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html
 */
import { METADATA_ADDRESS } from "./layout";

export const UNIT_DIR = "/etc/systemd/system";

/** The OnFailure= notifier (provisioning/watchdog.ts): `alert@<unit>.service` reports <unit>. */
export const ALERT_UNIT = "alert@.service";
/** OnFailure= of a unit that must not stay failed: systemd starts it when the unit fails for good. */
export const ALERT_ON_FAILURE = "alert@%n.service";

/** Unit file text from sections of [key, value] pairs; repeated keys are allowed (systemd accumulates them). */
export function renderUnit(sections: Record<string, Array<[string, string]>>, comment: string): string {
  const out = [`# ${comment}`, "# Rendered by saas-vps (provisioning/); pushed again on change. Do not edit on the server."];
  for (const [section, entries] of Object.entries(sections)) {
    out.push("", `[${section}]`, ...entries.map(([k, v]) => `${k}=${v}`));
  }
  return out.join("\n") + "\n";
}

/**
 * The part of the sandbox every service we render gets (app processes, backup jobs, tls-issue):
 * no new privileges, private /tmp and devices, no home directories, no kernel, clock, hostname
 * or namespace changes, the syscalls of an ordinary system service, and no way to the provider's
 * metadata service (it hands out the user-data: the host firewall stops every user but root,
 * and this stops a service's processes even when they run as root). Each unit adds what it can
 * close on top (file system view, capabilities, address families, ...).
 */
export const BASE_SANDBOX: Array<[string, string]> = [
  ["NoNewPrivileges", "yes"],
  ["PrivateTmp", "yes"],
  ["PrivateDevices", "yes"],
  ["ProtectHome", "yes"],
  ["ProtectHostname", "yes"],
  ["ProtectClock", "yes"],
  ["ProtectKernelTunables", "yes"],
  ["ProtectKernelModules", "yes"],
  ["ProtectKernelLogs", "yes"],
  ["ProtectControlGroups", "yes"],
  ["ProtectProc", "invisible"],
  ["RestrictNamespaces", "yes"],
  ["RestrictRealtime", "yes"],
  ["RestrictSUIDSGID", "yes"],
  ["LockPersonality", "yes"],
  ["KeyringMode", "private"],
  ["SystemCallArchitectures", "native"],
  // An allow list first; units may narrow it with later "~..." lines.
  ["SystemCallFilter", "@system-service"],
  ["IPAddressDeny", METADATA_ADDRESS],
];

/**
 * Sandboxing shared by every app process. Node needs W+X pages (V8 JIT), so
 * MemoryDenyWriteExecute stays off; everything else is as tight as a network service allows.
 */
export const APP_SANDBOX: Array<[string, string]> = [
  ...BASE_SANDBOX,
  ["ProtectSystem", "strict"],
  ["PrivateUsers", "yes"],
  ["ProcSubset", "pid"],
  ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"],
  ["RemoveIPC", "yes"],
  ["CapabilityBoundingSet", ""],
  ["AmbientCapabilities", ""],
  ["SystemCallFilter", "~@privileged @resources"],
  ["SystemCallErrorNumber", "EPERM"],
  ["DevicePolicy", "closed"],
  ["UMask", "0077"],
];


/**
 * Base system files: SSH lockdown, journald caps, unattended security upgrades (and restarts of
 * what uses a patched library), fail2ban.
 * Each is a drop-in (*.d/) so Debian's own files stay untouched and upgrades never prompt.
 */
import type { RenderedFile } from "./files";

const HEADER = "# Rendered by saas-vps (provisioning/system.ts); pushed again on change.";

/** sshd_config(5): keys only, no root. The admin user reaches root through sudo. */
export function renderSshdConfig(): string {
  return [HEADER, "PermitRootLogin no", "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "MaxAuthTries 3", "X11Forwarding no", ""].join("\n");
}

/** journald.conf(5): a chatty app cannot fill the disk. */
export function renderJournaldConfig(): string {
  return [HEADER, "[Journal]", "Storage=persistent", "SystemMaxUse=500M", "SystemKeepFree=1G", "MaxRetentionSec=1month", "RateLimitIntervalSec=30s", "RateLimitBurst=10000", ""].join("\n");
}

/** apt.conf: refresh lists and apply security upgrades daily (Debian's unattended-upgrades default origins). */
export function renderAutoUpgrades(): string {
  return [
    "// Rendered by saas-vps: daily security upgrades from Debian; no automatic reboot.",
    'APT::Periodic::Update-Package-Lists "1";',
    'APT::Periodic::Unattended-Upgrade "1";',
    'APT::Periodic::AutocleanInterval "7";',
    "",
  ].join("\n");
}

export const NEEDRESTART_CONF_PATH = "/etc/needrestart/conf.d/50-saas-vps.conf";

/**
 * needrestart (Perl, read by needrestart after Debian's needrestart.conf): after any apt run,
 * unattended-upgrades' included, restart every service still running a replaced library. Its
 * default asks, and unattended it falls back to listing only, so a patched OpenSSL would stay
 * unused by nginx, PostgreSQL and the app until the next reboot.
 */
export function renderNeedrestartConfig(): string {
  return [HEADER, "$nrconf{restart} = 'a';", ""].join("\n");
}

/** fail2ban jail for sshd, reading the journal (Debian 13 has no auth.log by default). */
export function renderFail2banJail(): string {
  return [HEADER, "[sshd]", "enabled = true", "backend = systemd", "maxretry = 5", "findtime = 10m", "bantime = 1h", ""].join("\n");
}

/** resolved.conf(5): no LLMNR/mDNS listeners on public addresses (only SSH, HTTP, HTTPS answer). */
export function renderResolvedConfig(): string {
  return [HEADER, "[Resolve]", "LLMNR=no", "MulticastDNS=no", ""].join("\n");
}

export function renderSystemFiles(): RenderedFile[] {
  return [
    {
      path: "/etc/systemd/resolved.conf.d/50-saas-vps.conf",
      content: renderResolvedConfig(),
      mode: "0644",
      onChange: "systemctl try-restart systemd-resolved",
    },
    { path: "/etc/ssh/sshd_config.d/50-saas-vps.conf", content: renderSshdConfig(), mode: "0644", onChange: "sshd -t && systemctl reload ssh" },
    { path: "/etc/systemd/journald.conf.d/50-saas-vps.conf", content: renderJournaldConfig(), mode: "0644", onChange: "systemctl restart systemd-journald" },
    { path: "/etc/apt/apt.conf.d/20auto-upgrades", content: renderAutoUpgrades(), mode: "0644" },
    { path: NEEDRESTART_CONF_PATH, content: renderNeedrestartConfig(), mode: "0644" },
    { path: "/etc/fail2ban/jail.d/50-saas-vps.conf", content: renderFail2banJail(), mode: "0644", onChange: "systemctl reload fail2ban" },
  ];
}

/**
 * Machine metrics on every server: Debian's prometheus-node-exporter, listening on loopback only
 * (read it through an SSH tunnel; README "Metrics"), with the few collectors a small box needs,
 * in a sandbox.
 *
 * Two files, because of when each must be there:
 * - the package's own settings file, `/etc/default/prometheus-node-exporter` (its unit passes
 *   `$ARGS` from it), holds only the listen address and is written before the package step: the
 *   package starts the exporter as it installs, and with Debian's default it would listen on
 *   every address. It is the smallest file that keeps it off the public address from the first
 *   second (cloud-init's apt keeps an existing conffile: --force-confold), and user-data is tight.
 * - a drop-in for the package's unit, pushOnly (nothing on first boot needs it): the collectors
 *   and the sandbox. The push restarts the exporter with both.
 */
import type { RenderedFile } from "./files";
import { BASE_SANDBOX, renderUnit, UNIT_DIR } from "./unit";

export const NODE_EXPORTER_PACKAGE = "prometheus-node-exporter";
export const NODE_EXPORTER_UNIT = "prometheus-node-exporter.service";
export const NODE_EXPORTER_BINARY = "/usr/bin/prometheus-node-exporter";
/** Loopback only: metrics tell an attacker a lot (ops status fails if it listens anywhere else). */
export const NODE_EXPORTER_ADDRESS = "127.0.0.1";
export const NODE_EXPORTER_PORT = 9100;
export const NODE_EXPORTER_SETTINGS_PATH = "/etc/default/prometheus-node-exporter";
export const NODE_EXPORTER_DROP_IN_PATH = `${UNIT_DIR}/${NODE_EXPORTER_UNIT}.d/50-saas-vps.conf`;

/**
 * What a small box needs: CPU, memory, load, disks and filesystems, network
 * traffic, the clock. Left out from the defaults, among others: textfile (the collectors
 * package's scripts: apt, SMART, NVMe; the watchdog covers what matters), hwmon/thermal/power
 * (a VM has none), arp, bonding, btrfs, edac, infiniband, ipvs, mdadm, nfs, xfs, zfs, sockstat,
 * netstat, softnet and the rest a one-disk, one-NIC server never has or nobody reads.
 */
export const NODE_EXPORTER_COLLECTORS = ["cpu", "diskstats", "filesystem", "loadavg", "meminfo", "netdev", "stat", "time", "uname", "vmstat"] as const;
// Not "pressure": Debian's kernels leave PSI off unless booted with psi=1 (the collector fails on
// Debian 13's cloud kernel, seen in the VM), and the load average says enough on a small box.

const RESTART = `systemctl daemon-reload && systemctl restart ${NODE_EXPORTER_UNIT}`;
/**
 * cloud-init installs the package with its Recommends: Debian's collectors package (its timers feed
 * the textfile collector, which is off here) and, through ipmitool, openipmi, whose service fails
 * on a server without IPMI (after a reboot the system was "degraded", seen in the VM). Off, so
 * neither runs for nothing nor leaves a failed unit for the watchdog.
 */
const QUIET_RECOMMENDS =
  "systemctl list-unit-files --no-legend 'prometheus-node-exporter-*.timer' openipmi.service | awk '{print $1}' | " +
  "xargs -r systemctl disable --now && { systemctl reset-failed openipmi.service 2>/dev/null || true; }";

/** The exporter's flags beyond the listen address: every default collector off, then ours on. */
export function nodeExporterCollectorFlags(): string[] {
  return ["--collector.disable-defaults", ...NODE_EXPORTER_COLLECTORS.map((c) => `--collector.${c}`)];
}

export function renderNodeExporterFiles(): RenderedFile[] {
  return [
    {
      path: NODE_EXPORTER_SETTINGS_PATH,
      content: `ARGS="--web.listen-address=${NODE_EXPORTER_ADDRESS}:${NODE_EXPORTER_PORT}"\n`,
      mode: "0644",
      beforePackages: true,
      onChange: RESTART,
    },
    { path: NODE_EXPORTER_DROP_IN_PATH, content: renderDropIn(), mode: "0644", pushOnly: true, onChange: `${RESTART} && ${QUIET_RECOMMENDS}` },
  ];
}

function renderDropIn(): string {
  return renderUnit({
    Service: [
      // The package's ExecStart, plus the collectors; $ARGS (the listen address) from its settings file.
      ["ExecStart", ""],
      ["ExecStart", `${NODE_EXPORTER_BINARY} $ARGS ${nodeExporterCollectorFlags().join(" ")}`],
      // Not ProtectProc=invisible: the filesystem collector reads PID 1's mounts. Home
      // directories read-only rather than hidden: it measures every mounted filesystem.
      ...BASE_SANDBOX.filter(([key]) => key !== "ProtectProc" && key !== "ProtectHome"),
      ["ProtectHome", "read-only"],
      ["ProtectSystem", "strict"],
      ["PrivateUsers", "yes"],
      ["RemoveIPC", "yes"],
      ["CapabilityBoundingSet", ""],
      ["AmbientCapabilities", ""],
      ["MemoryDenyWriteExecute", "yes"],
      // netdev reads the interfaces' counters over netlink.
      ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
      // Only this server may talk to it, whatever address it were made to listen on.
      ["IPAddressAllow", "localhost"],
      ["IPAddressDeny", "any"],
      ["SystemCallFilter", "~@privileged @resources"],
      ["SystemCallErrorNumber", "EPERM"],
      ["DevicePolicy", "closed"],
      ["UMask", "0077"],
    ],
  }, `Machine metrics on ${NODE_EXPORTER_ADDRESS}:${NODE_EXPORTER_PORT} only (provisioning/nodeExporter.ts); the package's unit, narrowed.`);
}

/**
 * The watchdog's thresholds (provisioning/watchdog.ts): each one's stack key, range and default,
 * once. The key table (keys.ts) parses the keys with these ranges and the renderer checks its
 * input against them, so a value the parser accepts is one the script is rendered with.
 */
export interface ThresholdSpec {
  /** The stack key, `saas-vps:<key>`. */
  key: string;
  min: number;
  max: number;
  default: number;
  /** Unit of the number, for messages and docs ("%", "hours", ...). */
  unit: string;
}

export const WATCHDOG_THRESHOLDS = {
  /** Alert when the root or the data filesystem is more than this full. */
  diskPercent: { key: "watchdogDiskPercent", min: 50, max: 99, default: 85, unit: "%" },
  /** Alert when less than this share of memory is available (MemAvailable of MemTotal). */
  memoryAvailablePercent: { key: "watchdogMemoryPercent", min: 1, max: 50, default: 10, unit: "%" },
  /** Alert when the 5-minute load average exceeds this share of the CPU count (200: twice the CPUs). */
  loadPercent: { key: "watchdogLoadPercent", min: 50, max: 2000, default: 200, unit: "% of the CPUs" },
  /**
   * Alert when the TLS certificate has fewer days left. certbot renews at 30 days left, so a
   * threshold below that fires only when renewal has failed for a while.
   */
  certificateDays: { key: "watchdogCertificateDays", min: 1, max: 28, default: 14, unit: "days" },
  /** Alert when the last good backup (or, without one, the watchdog's first run) is older. */
  backupMaxAgeHours: { key: "watchdogBackupMaxAgeHours", min: 2, max: 744, default: 26, unit: "hours" },
  /** Alert when the last good restore drill (weekly by default) is older. */
  drillMaxAgeDays: { key: "watchdogDrillMaxAgeDays", min: 1, max: 90, default: 8, unit: "days" },
} as const satisfies Record<string, ThresholdSpec>;

export type WatchdogThreshold = keyof typeof WATCHDOG_THRESHOLDS;
export type WatchdogThresholds = Record<WatchdogThreshold, number>;

/** Every threshold at its default. */
export const DEFAULT_WATCHDOG_THRESHOLDS = Object.fromEntries(
  Object.entries(WATCHDOG_THRESHOLDS).map(([name, spec]) => [name, spec.default]),
) as WatchdogThresholds;

/** The problem with one threshold's value, naming its key, the range and the value; undefined when it is in range. */
export function thresholdProblem(name: WatchdogThreshold, value: unknown): string | undefined {
  const spec: ThresholdSpec = WATCHDOG_THRESHOLDS[name];
  if (typeof value === "number" && Number.isInteger(value) && value >= spec.min && value <= spec.max) return undefined;
  return `saas-vps:${spec.key}: must be a whole number from ${spec.min} to ${spec.max} (${spec.unit}); got ${JSON.stringify(value)}`;
}

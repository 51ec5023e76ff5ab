/**
 * What watches a stack from outside, decided from its config: the uptime check of the site's
 * /health, the alerts on that check, and the resource alerts of DigitalOcean droplets. Pure;
 * components/monitoring.ts declares what it returns. Values are DigitalOcean's API enums (its
 * OpenAPI specification, resources/uptime and resources/monitoring; docs/ARCHITECTURE.md,
 * "Watching from outside").
 */
import type { AlertThresholds, StackConfig } from "../config/config";
import { RESOURCE_ALERT_WINDOWS, windowWords } from "../config/monitoring";
import type { Provider } from "../config/providers";
import { appUrlFor } from "./serverInput";

/** The app's health route: it answers 200 only when the app reaches its database. */
export const HEALTH_PATH = "/health";

/**
 * DigitalOcean Uptime's probe regions, on two continents. The outage alert is `down_global`: it
 * fires only when every region fails, so a fault of one probe location pages nobody.
 */
export const UPTIME_REGIONS = ["eu_west", "us_east"] as const;

export interface HealthCheckTarget {
  /** `https://<domain>/health`, or `http://<fixed IPv4>/health` for a plain-HTTP stack. */
  url: string;
  /** DigitalOcean's check type; an https check also reads the certificate's expiry. */
  type: "http" | "https";
}

/** The URL people use (`appUrlFor`, the app's APP_URL too) plus the health route. */
export function healthCheckTarget(config: Pick<StackConfig, "domain">, ipv4: string): HealthCheckTarget {
  return { url: `${appUrlFor(config, ipv4)}${HEALTH_PATH}`, type: config.domain ? "https" : "http" };
}

export interface UptimeAlertSpec {
  /** Part of the resource name; never changes for a given alert. */
  id: "down" | "certificate";
  type: "down_global" | "ssl_expiry";
  /** How long the condition must hold before DigitalOcean alerts. */
  period: "3m" | "5m";
  /** Days left, for ssl_expiry. */
  threshold?: number;
  comparison?: "less_than";
  /** The alert's name at DigitalOcean, as its messages show it. */
  name: string;
}

/**
 * The site down from every probe region for 3 minutes (a rolling release has no gap; a
 * one-instance release or a reboot stays under it), and, with a domain, a certificate that
 * renewal has not replaced in time.
 */
export function uptimeAlertSpecs(stackName: string, config: Pick<StackConfig, "domain">, thresholds: AlertThresholds): UptimeAlertSpec[] {
  const down: UptimeAlertSpec = { id: "down", type: "down_global", period: "3m", name: `${stackName}: site down from every region` };
  if (!config.domain) return [down];
  const days = thresholds.certificateDays;
  return [down, { id: "certificate", type: "ssl_expiry", threshold: days, comparison: "less_than", period: "5m", name: `${stackName}: certificate expires within ${days} days` }];
}

/** DigitalOcean's droplet metrics (Monitoring API alert policy types). */
export const DROPLET_METRICS = {
  cpu: "v1/insights/droplet/cpu",
  memory: "v1/insights/droplet/memory_utilization_percent",
  disk: "v1/insights/droplet/disk_utilization_percent",
} as const;

export interface ResourceAlertSpec {
  id: keyof typeof DROPLET_METRICS;
  type: (typeof DROPLET_METRICS)[keyof typeof DROPLET_METRICS];
  /** Percent; the policy fires above it. */
  value: number;
  window: (typeof RESOURCE_ALERT_WINDOWS)[keyof typeof RESOURCE_ALERT_WINDOWS];
  /** The policy's description, which DigitalOcean shows as its name. */
  description: string;
}

/**
 * CPU, memory and root-disk alerts for every droplet of the stack. Only DigitalOcean has them:
 * Hetzner Cloud has no alerting API.
 */
export function resourceAlertSpecs(stackName: string, provider: Provider, thresholds: AlertThresholds): ResourceAlertSpec[] {
  if (provider !== "digitalocean") return [];
  const spec = (id: ResourceAlertSpec["id"], what: string, value: number): ResourceAlertSpec => ({
    id,
    type: DROPLET_METRICS[id],
    value,
    window: RESOURCE_ALERT_WINDOWS[id],
    description: `${stackName}: ${what} above ${value}% for ${windowWords(RESOURCE_ALERT_WINDOWS[id])}`,
  });
  return [spec("cpu", "CPU", thresholds.cpuPercent), spec("memory", "memory", thresholds.memoryPercent), spec("disk", "root disk", thresholds.diskPercent)];
}

/**
 * Who watches the stack from outside and where alerts go: the choices of `saas-vps:monitoring`
 * and the ranges of the alert thresholds, one place for the key table, the parser and the docs.
 */

/**
 * `digitalocean`: DigitalOcean Uptime checks the site (any provider's: they probe from
 * DigitalOcean's regions, outside Hetzner's network), and DigitalOcean droplets get resource
 * alerts. `none`: nothing outside the servers notices an outage (warned at every preview).
 */
export const MONITORING_SERVICES = ["digitalocean", "none"] as const;
export type MonitoringService = (typeof MONITORING_SERVICES)[number];
export const DEFAULT_MONITORING: MonitoringService = "digitalocean";

/**
 * A usage alert fires above its threshold; at 100 % or more it never would, and below 1 % it
 * always does.
 */
export const PERCENT_RANGE = { min: 1, max: 99 } as const;

/** certbot renews a certificate this many days before it expires (its documented default). */
export const CERTBOT_RENEWAL_DAYS = 30;

/**
 * A certificate alert at certbot's renewal point or beyond would fire on every healthy
 * certificate; below it, an alert means renewal has failed.
 */
export const CERTIFICATE_DAYS_RANGE = { min: 1, max: CERTBOT_RENEWAL_DAYS - 1 } as const;

/**
 * How long a droplet must stay above a threshold before DigitalOcean alerts (its windows are 5m,
 * 10m, 30m and 1h). CPU and memory wait 10 minutes: a release's migrations or a restore drill may
 * peak for a few; a filling disk is told sooner.
 */
export const RESOURCE_ALERT_WINDOWS = { cpu: "10m", memory: "10m", disk: "5m" } as const;

/** A window as words for the docs ("10m" → "10 minutes"). */
export function windowWords(window: string): string {
  const [, amount, unit] = /^(\d+)([mh])$/.exec(window)!;
  return `${amount} ${unit === "m" ? "minutes" : amount === "1" ? "hour" : "hours"}`;
}

/**
 * DigitalOcean requires a channel with every Slack route. A Slack app's incoming webhook posts to
 * the channel it was made for and ignores this; only Slack's legacy webhooks honour it.
 */
export const DEFAULT_SLACK_CHANNEL = "#alerts";

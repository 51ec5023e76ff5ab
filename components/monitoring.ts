/**
 * The stack watched from outside (plan/monitoring.ts decides what): a DigitalOcean Uptime check
 * of the site's /health with its alerts, for either provider's servers, and DigitalOcean resource
 * alerts on every droplet, all sent to the stack's one alert route. Provider docs:
 * https://www.pulumi.com/registry/packages/digitalocean/ (UptimeCheck, UptimeAlert, MonitorAlert).
 */
import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";
import type { AlertRoute, AlertThresholds, StackConfig } from "../config/config";
import { type HealthCheckTarget, resourceAlertSpecs, UPTIME_REGIONS, uptimeAlertSpecs } from "../plan/monitoring";

export interface StackMonitoringArgs {
  stackName: string;
  config: Pick<StackConfig, "provider" | "domain">;
  route: AlertRoute;
  thresholds: AlertThresholds;
  /** What the check requests (the site's URL is known once the fixed IP exists). */
  healthCheck: pulumi.Input<HealthCheckTarget>;
  /** Provider ids of every server; resource alerts watch them on DigitalOcean. */
  serverIds: pulumi.Input<string>[];
}

/**
 * The route as DigitalOcean's alerts take it. The webhook URL is a credential (anyone holding it
 * posts into the channel): it stays a Pulumi secret, and so does every alert input holding it.
 */
export function alertNotifications(route: AlertRoute): { emails: string[]; slacks: Array<{ channel: string; url: pulumi.Output<string> }> } {
  return {
    emails: route.emails,
    slacks: route.slack ? [{ channel: route.slack.channel, url: pulumi.secret(route.slack.url) }] : [],
  };
}

export class StackMonitoring extends pulumi.ComponentResource {
  readonly check: digitalocean.UptimeCheck;
  readonly uptimeAlerts: digitalocean.UptimeAlert[];
  readonly resourceAlerts: digitalocean.MonitorAlert[];

  constructor(name: string, args: StackMonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
    super("saas-vps:monitoring:StackMonitoring", name, {}, opts);
    const parent = { parent: this };
    const notifications = alertNotifications(args.route);
    const target = pulumi.output(args.healthCheck);
    this.check = new digitalocean.UptimeCheck(
      `${name}-health`,
      { name: `${args.stackName}: site health`, target: target.url, type: target.type, regions: [...UPTIME_REGIONS], enabled: true },
      parent,
    );
    this.uptimeAlerts = uptimeAlertSpecs(args.stackName, args.config, args.thresholds).map(
      (spec) =>
        new digitalocean.UptimeAlert(
          `${name}-${spec.id}`,
          {
            checkId: this.check.id,
            name: spec.name,
            type: spec.type,
            period: spec.period,
            ...(spec.threshold !== undefined ? { threshold: spec.threshold, comparison: spec.comparison } : {}),
            notifications: [notifications],
          },
          parent,
        ),
    );
    this.resourceAlerts = resourceAlertSpecs(args.stackName, args.config.provider, args.thresholds).map(
      (spec) =>
        new digitalocean.MonitorAlert(
          `${name}-${spec.id}`,
          { type: spec.type, compare: "GreaterThan", value: spec.value, window: spec.window, description: spec.description, entities: args.serverIds, alerts: notifications, enabled: true },
          parent,
        ),
    );
    this.registerOutputs({});
  }
}

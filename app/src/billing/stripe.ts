// The Stripe client, one per process, from config. STRIPE_API_BASE points it elsewhere (stripe-mock
// or a test server); otherwise it talks to api.stripe.com with the library's pinned API version.
import Stripe from "stripe";
import type { StripeConfig } from "../core/config.js";

export function createStripeClient(config: StripeConfig): Stripe {
  const base = config.apiBase;
  return new Stripe(config.secretKey, {
    maxNetworkRetries: 2,
    timeout: 10000,
    ...(base
      ? { host: base.hostname, port: Number(base.port || (base.protocol === "https:" ? 443 : 80)), protocol: base.protocol === "https:" ? "https" : "http" }
      : {}),
  });
}

export type { Stripe };

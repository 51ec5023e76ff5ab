// The Stripe client, one per process, from config. STRIPE_API_BASE points it elsewhere (stripe-mock
// or a test server); otherwise it talks to api.stripe.com with the library's pinned API version.
// The library is large (every API resource): it is loaded only when billing is configured, so a
// process without STRIPE_SECRET_KEY starts as fast as before.
import type Stripe from "stripe";
import type { StripeConfig } from "../core/config.js";

export async function createStripeClient(config: StripeConfig): Promise<Stripe> {
  const { default: StripeClient } = await import("stripe");
  const base = config.apiBase;
  return new StripeClient(config.secretKey, {
    maxNetworkRetries: 2,
    timeout: 10000,
    ...(base
      ? { host: base.hostname, port: Number(base.port || (base.protocol === "https:" ? 443 : 80)), protocol: base.protocol === "https:" ? "https" : "http" }
      : {}),
  });
}

/**
 * The client, loaded in the background from now on and awaited where first needed: loading the
 * library takes seconds on a busy machine, longer than Fastify lets a plugin take to start.
 */
export function lazyStripeClient(config: StripeConfig): () => Promise<Stripe> {
  const client = createStripeClient(config);
  client.catch(() => {}); // surfaces to the first caller
  return () => client;
}

export type { Stripe };

// The Stripe client, one per process, from config. STRIPE_API_BASE points it elsewhere (stripe-mock
// or a test server); otherwise it talks to api.stripe.com with the library's pinned API version.
// The library is large (every API resource): it is loaded only when billing is configured and
// (in web) only once a request needs it.
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
 * The client, loaded by the first request that needs it (a webhook, a Checkout or Portal link),
 * then kept: a web process that serves none loads none of the library (its code is ~3.5 MB of
 * RSS and a share of the start), and none of it runs while the process starts or plugins boot.
 * A failed load is not kept, so a later request tries again.
 */
export function lazyStripeClient(config: StripeConfig): () => Promise<Stripe> {
  let client: Promise<Stripe> | undefined;
  return () =>
    (client ??= createStripeClient(config).catch((err: unknown) => {
      client = undefined;
      throw err;
    }));
}

export type { Stripe };

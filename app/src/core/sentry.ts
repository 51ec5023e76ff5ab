// Error reporting to Sentry when SENTRY_DSN is set. Uses @sentry/core's server client with a
// fetch transport (no OpenTelemetry auto-instrumentation: small artifact, small RSS). The SDK is
// imported only when a DSN is configured: loading it costs ~20 MB of RSS.
//
// Every event carries the release id (manifest.json's, the one X-App-Release shows) as Sentry's
// release, SENTRY_ENVIRONMENT (the stack) as its environment, and tags: component (web, worker)
// and, when the error belongs to a request or to a job a request enqueued, request_id.

export interface ErrorReporter {
  /** `context` goes along as extra data; its `requestId`, if any, also as the tag request_id. */
  capture(err: unknown, context?: Record<string, unknown>): void;
  flush(timeoutMs: number): Promise<void>;
}

const noop: ErrorReporter = { capture: () => {}, flush: async () => {} };

export async function createErrorReporter(
  dsn: string | undefined,
  release: string,
  component: string,
  environment?: string,
): Promise<ErrorReporter> {
  if (!dsn) return noop;
  const { ServerRuntimeClient, createStackParser, createTransport, nodeStackLineParser, setCurrentClient, captureException, flush } =
    await import("@sentry/core");
  const client = new ServerRuntimeClient({
    dsn,
    release,
    ...(environment ? { environment } : {}),
    serverName: component,
    integrations: [],
    stackParser: createStackParser(nodeStackLineParser()),
    transport: (options) =>
      createTransport(options, async (request) => {
        const res = await fetch(options.url, { method: "POST", body: request.body as string | Uint8Array });
        return {
          statusCode: res.status,
          headers: {
            "x-sentry-rate-limits": res.headers.get("x-sentry-rate-limits"),
            "retry-after": res.headers.get("retry-after"),
          },
        };
      }),
  });
  setCurrentClient(client);
  client.init();
  return {
    capture: (err, context) => {
      const requestId = context?.requestId;
      const tags = typeof requestId === "string" ? { component, request_id: requestId } : { component };
      captureException(err, context ? { extra: context, tags } : { tags });
    },
    flush: async (timeoutMs) => {
      await flush(timeoutMs);
    },
  };
}

// The request id joins the log lines of one request across hops: nginx's access log, the web
// process, and the worker running a job the request enqueued.

/** nginx sets X-Request-Id; an id of this shape is kept as given, anything else is replaced. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function isRequestId(value: unknown): value is string {
  return typeof value === "string" && REQUEST_ID.test(value);
}

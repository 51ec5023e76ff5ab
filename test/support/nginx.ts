/**
 * The host's nginx in tests: its version, and the site as that version can read it. Debian 12's
 * nginx (1.22) predates `http2 on;`, which the servers' Debian 13 nginx (1.26) wants; the VM e2e
 * test checks the exact file on Debian 13.
 */
import { run } from "./tools";

/** nginx -v of the host, e.g. "1.22.1". */
export function hostNginxVersion(): string {
  const r = run("nginx", ["-v"]);
  const m = /nginx\/(\d+\.\d+\.\d+)/.exec(r.stderr + r.stdout);
  if (!m) throw new Error(`cannot read the nginx version: ${r.stderr}`);
  return m[1];
}

/** Whether nginx `version` is older than 1.25.1, the first to know `http2 on;`. */
export function predatesHttp2Directive(version: string): boolean {
  const [major, minor, patch] = version.split(".").map(Number);
  return major * 1e6 + minor * 1e3 + patch < 1 * 1e6 + 25 * 1e3 + 1;
}

/** The same site in the spelling nginx < 1.25.1 knows: http2 as a `listen` parameter. */
export function withListenHttp2(site: string): string {
  if (!/^\s*http2 on;$/m.test(site)) return site;
  return site.replace(/^\s*http2 on;\n/m, "").replace(/(listen \S+) ssl( proxy_protocol)?;/g, "$1 ssl http2$2;");
}

/** The site as the host's nginx reads it. */
export function forHostNginx(site: string): string {
  return predatesHttp2Directive(hostNginxVersion()) ? withListenHttp2(site) : site;
}

/**
 * The nginx site: one upstream over the app's web instances, failover between them, JSON
 * access logs with a request id, and (with a domain) HTTPS with an ACME webroot.
 * Directive reference: https://nginx.org/en/docs/http/ngx_http_upstream_module.html and
 * https://nginx.org/en/docs/http/ngx_http_proxy_module.html#proxy_next_upstream
 */
import { isIPv4, isIPv6 } from "node:net";
import { ACME_WEBROOT, NGINX_DENY_DIR, RESERVED_PORTS, TLS_CERTIFICATE, TLS_DIR } from "./layout";
import type { RenderedFile } from "./files";

export interface NginxSiteOptions {
  /** Ports of the web instances on 127.0.0.1. */
  webPorts: number[];
  /** Port of a temporary release instance, listed as `backup` (used only while the others are down). */
  surgePort?: number;
  /** Public hostname; without it the site answers plain HTTP on any name (the IP). */
  domain?: string;
  /** Request body limit in MiB (uploads). Default 25. */
  maxBodyMiB?: number;
  /** HTTP listen port. Default 80 (tests use a free loopback port). */
  httpPort?: number;
  /** HTTPS listen port. Default 443. */
  httpsPort?: number;
  /** Listen address. Default: all IPv4 and IPv6 addresses. */
  listenAddress?: string;
  /** Certificate paths; default the stable links in /etc/saas-vps/tls that bootstrap points at certbot's files. */
  tlsCertificate?: string;
  tlsCertificateKey?: string;
  /** Access log path. Default /var/log/nginx/saas-vps.access.log. */
  accessLog?: string;
  /** Behind the provider's load balancer (stage scaled); see NginxBalancer. Not with listenAddress. */
  balancer?: NginxBalancer;
  /**
   * An app server that does not issue the site's certificate (stage scaled): the balancer may send
   * ACME's HTTP-01 requests here, so the port-80 server passes them to this URL, the issuing app
   * server's ACME relay listener (http://<private address>:<port>), where certbot's webroot is.
   */
  acmeChallengeUpstream?: string;
  /**
   * The app server that issues the certificate for the others (stage scaled): a listener of its
   * own on this port serves ACME's HTTP-01 files from the webroot to them, plain HTTP without the
   * PROXY header (nginx's proxy_pass cannot send one, and the public and health listeners want it).
   * That path only; the firewalls open the port to the other app servers only.
   */
  acmeRelayPort?: number;
}

/**
 * An app server behind the provider's load balancer (stage scaled), which forwards TCP with the
 * PROXY protocol and ends no TLS (docs/ARCHITECTURE.md, "TLS and client addresses behind the
 * balancer"). The public listeners then take the PROXY header on every address but loopback, and
 * the client address in it becomes $remote_addr; the balancer's health check has a listener of
 * its own.
 */
export interface NginxBalancer {
  /**
   * Where the balancer's connections come from (the private network's range, or the balancer's
   * own address as a /32): the only source whose PROXY header is believed. A header from anywhere
   * else leaves $remote_addr the connecting address.
   */
  trustedCidr: string;
  /**
   * While this file exists the health listener answers 503 without asking the app, so the
   * balancer's health check takes the server out of rotation, while what the balancer already
   * sent here is still served. A release drains a server this way before touching it: neither
   * provider's balancer can drain one target through its API.
   */
  drainFile: string;
  /**
   * The health listener's port (LB_HEALTH_PORT on a server). Its connections must open with a
   * PROXY header, as the public ones do: both providers' checks send one when the balancer
   * forwards with the PROXY protocol (DigitalOcean's follows the balancer's setting unless the API
   * says otherwise, and the installed provider cannot say it; Hetzner's check belongs to the
   * service that has `proxyprotocol`). nginx has no "header optional": a check without one fails.
   */
  healthPort: number;
  /** keepalive_time on the public listeners; default NGINX_BALANCED_CONNECTION_SECONDS (tests shorten it). */
  connectionSeconds?: number;
  /** Where fail2ban's bans are (one `deny` file per client); default NGINX_DENY_DIR. */
  denyDir?: string;
}

export const NGINX_SITE_PATH = "/etc/nginx/conf.d/saas-vps.conf";
/**
 * Seconds nginx treats a failed instance as down (after max_fails=3). The release tool pauses longer
 * than this between instances, or nginx could see every instance failed at once.
 */
export const NGINX_FAIL_TIMEOUT_SECONDS = 2;
export const UPSTREAM = "saas_web";
/**
 * Seconds nginx keeps an idle upstream keep-alive connection (`keepalive_timeout` in the upstream
 * block; nginx's default is 60 s). The app must keep idle connections open LONGER than this, so
 * that nginx, never the app, closes an idle one: nginx may be writing a request onto it at that
 * moment, and a POST it has sent is never retried on another instance — the client gets a 502.
 * The reference app keeps them 5 s (app/src/api/app.ts) and, when it stops, lets nginx close them.
 */
export const NGINX_UPSTREAM_KEEPALIVE_TIMEOUT_SECONDS = 3;
/**
 * Behind the balancer, the seconds one client connection may keep bringing requests
 * (keepalive_time; nginx's default is an hour). The balancer forwards TCP, so it sends no new
 * connections to a drained server but leaves the ones it already sent there: each keeps bringing
 * requests to this server until it closes. nginx answers the first request past this age with
 * `Connection: close` (HTTP/2: GOAWAY), which the client honours before it sends another, and
 * closes an idle one after keepalive_timeout (shorter), so a drain has waited long enough once
 * this time and the longest request have passed. A reload would end them sooner, but closes the
 * idle ones at once, under a request the client may be sending on one at that moment. A client
 * reconnects at most once a minute (one TLS handshake).
 */
export const NGINX_BALANCED_CONNECTION_SECONDS = 60;
/** Idle keep-alive connections to the instances each nginx worker keeps (`keepalive` in the upstream block). */
export const NGINX_UPSTREAM_KEEPALIVE_CONNECTIONS = 128;

/**
 * The app's routes that run scrypt (about 0.2 s of CPU each: app/src/auth/password.ts) or check a
 * secret token: each is a guess an attacker can repeat. One shared budget per client address, so
 * spreading guesses over the routes buys nothing.
 */
export const AUTH_ROUTES = ["/auth/login", "/auth/register", "/me/password", "/invitations/accept"] as const;
/**
 * Sustained auth requests per minute per address: one every 6 s is 0.2 s of scrypt per 6 s, about
 * 3 % of one core, so it takes some 30 addresses at full rate to fill one of a 2-vCPU server's
 * cores; a person signing in needs one request.
 */
export const AUTH_RATE_PER_MINUTE = 10;
/** Auth requests one address may send at once beyond the rate: a person retrying a mistyped password 5 times is not refused. */
export const AUTH_BURST = 5;
/** Seconds a refused client should wait: the time the rate takes to allow the next request. */
export const AUTH_RETRY_AFTER_SECONDS = 60 / AUTH_RATE_PER_MINUTE;
/**
 * Requests in progress at once per client address (limit_conn). A browser keeps at most 6
 * connections per host over HTTP/1.1 and multiplexes one over HTTP/2, so 128 leaves room for an
 * office behind one NAT address, while one address cannot hold more than a small share of
 * Debian's 768 connections per nginx worker (each proxied request takes two).
 */
export const REQUESTS_IN_PROGRESS_PER_ADDRESS = 128;
/**
 * Slow clients (slowloris): the seconds nginx waits for a request's header, between two reads of
 * its body, and between two writes of the answer, before it closes the connection (nginx's
 * default is 60 s each); and how long an idle keep-alive connection stays open (Debian's 65 s).
 * Each is a pause, not a total: a large upload over a slow line still completes.
 */
export const CLIENT_TIMEOUT_SECONDS = 10;
export const CLIENT_KEEPALIVE_TIMEOUT_SECONDS = 20;
/** The shared-memory zones (nginx's names) the rate and in-progress limits count in; fail2ban's filter names the first. */
export const AUTH_LIMIT_ZONE = "saas_auth";
export const ADDRESS_CONN_ZONE = "saas_addr";
/** A caller's X-Request-Id is kept only when it looks like an id: up to 64 of these characters (no quotes, spaces or control bytes). */
export const CLIENT_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;
/**
 * TLS as Mozilla's "intermediate" profile (guideline 5.7, ssl-config.mozilla.org): TLS 1.2 and 1.3,
 * forward-secret AEAD ciphers only, the client's choice among them. The DHE ones need ssl_dhparam,
 * which is not set, so nginx offers the ECDHE ones (and certbot's default ECDSA key uses only those).
 */
export const TLS_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305", "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384",
  "DHE-RSA-CHACHA20-POLY1305",
];
/** Two years, as Mozilla's profile says; a browser that saw it refuses plain HTTP to the domain that long. */
export const HSTS_MAX_AGE_SECONDS = 63072000;

/**
 * Preconditions of the site, asserted (a plain Error: a programming error if reached). The user's
 * values are validated with their key names in the config layer (webInstances 1-16 gives ports
 * 3001-3016, domain a bare hostname); what reaches here came through it or from a test.
 */
export function validateNginxSiteOptions(opts: NginxSiteOptions): void {
  const problems: string[] = [];
  if (opts.webPorts.length === 0) problems.push("nginx: webPorts must list at least one port; got none");
  const seen = new Set<number>();
  for (const port of opts.webPorts) {
    if (!Number.isInteger(port) || port < 1024 || port > 65535) problems.push(`nginx: web port ${port} must be an integer from 1024 to 65535`);
    if (RESERVED_PORTS.includes(port)) problems.push(`nginx: web port ${port} clashes with a reserved port (${RESERVED_PORTS.join(", ")})`);
    if (seen.has(port)) problems.push(`nginx: web port ${port} is listed twice; each instance needs its own port`);
    seen.add(port);
  }
  if (opts.surgePort !== undefined && seen.has(opts.surgePort)) problems.push(`nginx: surge port ${opts.surgePort} clashes with a web instance port`);
  for (const port of [opts.httpPort, opts.httpsPort]) {
    if (port !== undefined && seen.has(port)) problems.push(`nginx: listen port ${port} clashes with a web instance port`);
  }
  if (opts.domain !== undefined && !/^[a-z0-9.-]+$/i.test(opts.domain)) {
    problems.push(`nginx: domain ${JSON.stringify(opts.domain)} must be a bare hostname (letters, digits, dots, hyphens)`);
  }
  if (opts.balancer) {
    const { trustedCidr, drainFile, healthPort } = opts.balancer;
    if (opts.listenAddress !== undefined) problems.push("nginx: balancer and listenAddress exclude each other: behind the balancer the site listens on every address (with the PROXY protocol) and on loopback (without)");
    if (!isCidr(trustedCidr)) problems.push(`nginx: balancer.trustedCidr must be an address range such as 10.0.0.0/16; got ${JSON.stringify(trustedCidr)}`);
    const { denyDir } = opts.balancer;
    if (denyDir !== undefined && !/^\/[A-Za-z0-9._/-]+$/.test(denyDir)) problems.push(`nginx: balancer.denyDir must be an absolute path of letters, digits and ._/-; got ${JSON.stringify(denyDir)}`);
    if (!/^\/[A-Za-z0-9._/-]+$/.test(drainFile)) problems.push(`nginx: balancer.drainFile must be an absolute path of letters, digits and ._/-; got ${JSON.stringify(drainFile)}`);
    if (!Number.isInteger(healthPort) || healthPort < 1 || healthPort > 65535) problems.push(`nginx: balancer.healthPort must be an integer from 1 to 65535; got ${healthPort}`);
    const seconds = opts.balancer.connectionSeconds;
    if (seconds !== undefined && (!Number.isInteger(seconds) || seconds < 1)) problems.push(`nginx: balancer.connectionSeconds must be a whole number of seconds, at least 1; got ${seconds}`);
    if (seen.has(healthPort) || healthPort === opts.surgePort) problems.push(`nginx: balancer.healthPort ${healthPort} clashes with a web instance port`);
    if (healthPort === (opts.httpPort ?? 80) || (opts.domain !== undefined && healthPort === (opts.httpsPort ?? 443))) problems.push(`nginx: balancer.healthPort ${healthPort} clashes with a public listen port`);
  }
  if (opts.acmeChallengeUpstream !== undefined) {
    if (opts.domain === undefined) problems.push("nginx: acmeChallengeUpstream needs a domain (without one there is no certificate)");
    if (!/^http:\/\/(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:]+\]):\d{1,5}$/i.test(opts.acmeChallengeUpstream)) problems.push(`nginx: acmeChallengeUpstream must be http://<address>:<port>; got ${JSON.stringify(opts.acmeChallengeUpstream)}`);
  }
  if (opts.acmeRelayPort !== undefined) {
    const relay = opts.acmeRelayPort;
    if (opts.domain === undefined) problems.push("nginx: acmeRelayPort needs a domain (without one there is no certificate)");
    if (opts.acmeChallengeUpstream !== undefined) problems.push("nginx: a server either serves ACME challenges (the issuer) or passes them on, not both");
    if (!Number.isInteger(relay) || relay < 1 || relay > 65535) problems.push(`nginx: acmeRelayPort must be an integer from 1 to 65535; got ${relay}`);
    if (seen.has(relay) || relay === opts.surgePort || relay === (opts.httpPort ?? 80) || relay === (opts.httpsPort ?? 443) || relay === opts.balancer?.healthPort) {
      problems.push(`nginx: acmeRelayPort ${relay} clashes with another listener of the site`);
    }
  }
  const body = opts.maxBodyMiB ?? 25;
  if (!Number.isInteger(body) || body < 1 || body > 10240) problems.push(`nginx: maxBodyMiB must be an integer from 1 to 10240; got ${body}`);
  if (problems.length > 0) throw new Error(problems.join("\n"));
}

/** An IPv4 or IPv6 range in CIDR notation, as set_real_ip_from takes it. */
function isCidr(value: string): boolean {
  const m = /^([0-9a-f:.]+)\/(\d{1,3})$/i.exec(value);
  if (!m) return false;
  const bits = Number(m[2]);
  if (isIPv4(m[1]!)) return bits <= 32;
  return isIPv6(m[1]!) && bits <= 128;
}

export function renderNginxSite(opts: NginxSiteOptions): string {
  validateNginxSiteOptions(opts);
  const httpPort = opts.httpPort ?? 80;
  const httpsPort = opts.httpsPort ?? 443;
  const { balancer } = opts;
  // Behind the balancer, a connection to the wildcard addresses must open with a PROXY header,
  // while one to loopback must not: the watchdog and the ops status script ask this nginx for
  // /health on 127.0.0.1. nginx binds only the wildcard socket and picks the listen's parameters
  // by the connection's local address, so both hold on one port.
  const listen = (port: number, extra = "") =>
    balancer
      ? [`listen ${port}${extra} proxy_protocol;`, `listen [::]:${port}${extra} proxy_protocol;`, `listen 127.0.0.1:${port}${extra};`, `listen [::1]:${port}${extra};`]
      : opts.listenAddress
        ? [`listen ${opts.listenAddress}:${port}${extra};`]
        : [`listen ${port}${extra};`, `listen [::]:${port}${extra};`];
  // $remote_addr (the access log, the limits per address, X-Real-IP and X-Forwarded-For to the
  // app) is then the client's from the header, but only when the balancer sent it; on loopback
  // there is no header and it stays 127.0.0.1. keepalive_time bounds a drain's wait (see
  // NGINX_BALANCED_CONNECTION_SECONDS).
  const behindBalancer = balancer
    ? [
        `set_real_ip_from ${balancer.trustedCidr};`, "real_ip_header proxy_protocol;", `keepalive_time ${balancer.connectionSeconds ?? NGINX_BALANCED_CONNECTION_SECONDS}s;`,
        // fail2ban's bans, by the client's address from the header (a wildcard matching nothing is no error).
        `include ${balancer.denyDir ?? NGINX_DENY_DIR}/*.conf;`,
      ]
    : [];
  const accessLog = opts.accessLog ?? "/var/log/nginx/saas-vps.access.log";

  const httpServer = opts.domain
    ? block("server", [
        ...listen(httpPort, " default_server"),
        ...behindBalancer,
        `server_name ${opts.domain};`,
        `access_log ${accessLog} saas_json;`,
        "server_tokens off;",
        ...clientLimits(),
        // Let's Encrypt HTTP-01 challenges (certbot --webroot) must stay on plain HTTP. Behind the
        // balancer, an app server that does not issue passes them to the one that does.
        ...block(
          "location /.well-known/acme-challenge/",
          opts.acmeChallengeUpstream
            ? [`proxy_pass ${opts.acmeChallengeUpstream};`, "proxy_set_header Host $host;", "proxy_connect_timeout 2s;", "proxy_read_timeout 10s;"]
            : [`root ${ACME_WEBROOT};`],
        ),
        ...block("location /", ["return 301 https://$host$request_uri;"]),
      ])
    : block("server", [
        ...listen(httpPort, " default_server"),
        ...behindBalancer,
        "server_name _;",
        `access_log ${accessLog} saas_json;`,
        ...serverSettings(opts),
        ...clientLimits(),
        ...SECURITY_HEADERS,
        ...appLocations(SECURITY_HEADERS),
      ]);

  const tlsHeaders = [`add_header Strict-Transport-Security "max-age=${HSTS_MAX_AGE_SECONDS}" always;`, ...SECURITY_HEADERS];
  const httpsServer = opts.domain
    ? block("server", [
        // Debian 13's nginx (1.26) warns that `listen ... http2` is deprecated; `http2 on;` is
        // the current form (since 1.25.1), checked by Debian 13's nginx in the VM e2e test.
        ...listen(httpsPort, " ssl"),
        ...behindBalancer,
        "http2 on;",
        `server_name ${opts.domain};`,
        `access_log ${accessLog} saas_json;`,
        ...serverSettings(opts),
        ...clientLimits(),
        `ssl_certificate ${opts.tlsCertificate ?? TLS_CERTIFICATE};`,
        `ssl_certificate_key ${opts.tlsCertificateKey ?? `${TLS_DIR}/privkey.pem`};`,
        "ssl_protocols TLSv1.2 TLSv1.3;",
        `ssl_ciphers ${TLS_CIPHERS.join(":")};`,
        "ssl_prefer_server_ciphers off;",
        "ssl_session_cache shared:saas_tls:10m;",
        "ssl_session_timeout 1d;",
        // Ticket keys live in memory until nginx restarts: without rotation they would undo forward secrecy.
        "ssl_session_tickets off;",
        ...tlsHeaders,
        ...appLocations(tlsHeaders),
      ])
    : [];

  // The balancer's health check: the drain answers here, and only here, so that /health on the
  // public listeners (the watchdog's, the ops status script's, a user's) still says whether the
  // app behind this nginx works while the server is out of rotation on purpose. The check's
  // connections open with a PROXY header (see NginxBalancer.healthPort); nothing but /health; the
  // firewalls open the port to the balancer only.
  const healthServer = balancer
    ? block("server", [
        `listen ${balancer.healthPort} proxy_protocol;`,
        `listen [::]:${balancer.healthPort} proxy_protocol;`,
        "server_name _;",
        `access_log ${accessLog} saas_json;`,
        "server_tokens off;",
        ...proxySettings(),
        ...block("location = /health", ["access_log off;", `if (-f ${balancer.drainFile}) { return 503; }`, `proxy_pass http://${UPSTREAM};`]),
        ...block("location /", ["return 404;"]),
      ])
    : [];

  // The issuer's relay: the other app servers pass ACME's requests here (acmeChallengeUpstream).
  const acmeRelayServer = opts.acmeRelayPort !== undefined
    ? block("server", [
        `listen ${opts.acmeRelayPort};`,
        `listen [::]:${opts.acmeRelayPort};`,
        "server_name _;",
        `access_log ${accessLog} saas_json;`,
        "server_tokens off;",
        ...block("location /.well-known/acme-challenge/", [`root ${ACME_WEBROOT};`]),
        ...block("location /", ["return 404;"]),
      ])
    : [];

  // Only new names at http level (Debian's nginx.conf already sets gzip, server_tokens ... there
  // and nginx rejects a duplicate); everything else is set per server block, where it overrides.
  // The file ships without comments (user-data size): the reasons are the comments here.
  return [
    "# Rendered by saas-vps (provisioning/nginx.ts); pushed again on change. Do not edit on the server.",
    "# Shipped without comments (user-data size); commented source: provisioning/nginx.ts in the saas-vps repository.",
    "",
    // One JSON object per request; request_id ties nginx lines to the app's log lines.
    "log_format saas_json escape=json '{\"time\":\"$time_iso8601\",\"request_id\":\"$saas_request_id\",'",
    "  '\"remote_addr\":\"$remote_addr\",\"method\":\"$request_method\",\"uri\":\"$request_uri\",'",
    "  '\"status\":$status,\"bytes\":$body_bytes_sent,\"duration\":$request_time,'",
    "  '\"upstream\":\"$upstream_addr\",\"upstream_status\":\"$upstream_status\",'",
    "  '\"upstream_duration\":\"$upstream_response_time\",\"user_agent\":\"$http_user_agent\"}';",
    "",
    // Keep a caller's X-Request-Id (tracing across services) when it looks like an id; otherwise nginx's own.
    ...block("map $http_x_request_id $saas_request_id", [`default $request_id;`, `"~${CLIENT_REQUEST_ID.source}" $http_x_request_id;`]),
    "",
    // Limits per client address ($binary_remote_addr): behind the balancer, the client's from the
    // PROXY header (behindBalancer above), never the balancer's.
    `limit_req_zone $binary_remote_addr zone=${AUTH_LIMIT_ZONE}:10m rate=${AUTH_RATE_PER_MINUTE}r/m;`,
    `limit_conn_zone $binary_remote_addr zone=${ADDRESS_CONN_ZONE}:10m;`,
    "",
    // An instance that failed 3 times is skipped for 2 s; a rolling release stops one instance at a time.
    ...block(`upstream ${UPSTREAM}`, [
      // max_fails=3: one slow or 503 answer (a box under load) must not take an instance out, or
      // nginx can see every instance down at once ("no live upstreams"); a stopped instance still
      // leaves after three refused connects, each retried on another instance.
      ...opts.webPorts.map((port) => `server 127.0.0.1:${port} max_fails=3 fail_timeout=${NGINX_FAIL_TIMEOUT_SECONDS}s;`),
      ...(opts.surgePort ? [`server 127.0.0.1:${opts.surgePort} backup;`] : []),
      // Idle upstream connections each worker keeps for reuse. With 32, a burst of more requests in
      // flight than that (128 connections in bench/proxy.ts) made nginx close the surplus after each
      // answer and connect anew for the next: ~10 upstream connects per 1000 requests, more CPU per
      // request in the instances and a longer tail. Idle ones still close after keepalive_timeout,
      // so a larger cache only lasts as long as the burst does.
      `keepalive ${NGINX_UPSTREAM_KEEPALIVE_CONNECTIONS};`,
      // Idle connections are closed by nginx before the app would (the app must keep them longer),
      // so nginx never sends a request onto one the app is closing: a POST there is lost as a 502.
      `keepalive_timeout ${NGINX_UPSTREAM_KEEPALIVE_TIMEOUT_SECONDS}s;`,
    ]),
    "",
    ...httpServer,
    ...(httpsServer.length ? ["", ...httpsServer] : []),
    ...(healthServer.length ? ["", ...healthServer] : []),
    ...(acmeRelayServer.length ? ["", ...acmeRelayServer] : []),
    "",
  ].join("\n");
}

/** Per-server settings: compression, body limit, no version in headers or error pages. */
function serverSettings(opts: NginxSiteOptions): string[] {
  return [
    "server_tokens off;",
    `client_max_body_size ${opts.maxBodyMiB ?? 25}m;`,
    "gzip on;",
    "gzip_proxied any;",
    "gzip_min_length 1024;",
    "gzip_types text/plain text/css application/json application/javascript text/xml application/xml image/svg+xml;",
  ];
}

/** Slow clients are cut off, one address holds a bounded share of the connections; refusals are 429. */
function clientLimits(): string[] {
  return [
    `client_header_timeout ${CLIENT_TIMEOUT_SECONDS}s;`,
    `client_body_timeout ${CLIENT_TIMEOUT_SECONDS}s;`,
    `send_timeout ${CLIENT_TIMEOUT_SECONDS}s;`,
    `keepalive_timeout ${CLIENT_KEEPALIVE_TIMEOUT_SECONDS}s;`,
    `limit_conn ${ADDRESS_CONN_ZONE} ${REQUESTS_IN_PROGRESS_PER_ADDRESS};`,
    "limit_conn_status 429;",
    "limit_req_status 429;",
  ];
}

/**
 * Answers for a JSON API: no content of any kind may load or frame it, and no browser feature is
 * granted to it. X-Request-Id lets a user quote the id that ties the log lines together.
 */
const SECURITY_HEADERS = [
  'add_header X-Content-Type-Options "nosniff" always;',
  'add_header X-Frame-Options "DENY" always;',
  'add_header Referrer-Policy "strict-origin-when-cross-origin" always;',
  `add_header Content-Security-Policy "default-src 'none'; frame-ancestors 'none'" always;`,
  'add_header Permissions-Policy "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()" always;',
  "add_header X-Request-Id $saas_request_id always;",
];

/** The JSON body of nginx's own 429, in the app's error shape ({error, message}). */
export const RATE_LIMITED_BODY = JSON.stringify({
  error: "rate_limited",
  message: `too many requests from your address; retry in ${AUTH_RETRY_AFTER_SECONDS} seconds`,
});

/**
 * Proxy settings at server level: every location inherits them (a location that sets none of its
 * own proxy_set_header inherits all of them), so each location says only where it differs.
 */
function proxySettings(): string[] {
  return [
    "proxy_http_version 1.1;",
    'proxy_set_header Connection "";',
    "proxy_set_header Host $host;",
    // Set here, never passed on from the client: the app trusts these from nginx alone.
    "proxy_set_header X-Forwarded-Host $host;",
    "proxy_set_header X-Real-IP $remote_addr;",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    "proxy_set_header X-Forwarded-Proto $scheme;",
    "proxy_set_header X-Request-Id $saas_request_id;",
    // The app echoes the id too; nginx's add_header (also on its own error pages) is the one answer.
    "proxy_hide_header X-Request-Id;",
    // Retry another instance when one is down or restarting (safe: only before a response starts).
    "proxy_next_upstream error timeout http_502 http_503;",
    "proxy_next_upstream_tries 3;",
    "proxy_connect_timeout 2s;",
    "proxy_read_timeout 60s;",
  ];
}

function appLocations(headers: string[]): string[] {
  const proxyPass = `proxy_pass http://${UPSTREAM};`;
  return [
    ...proxySettings(),
    // nginx's 429 (rate or in-progress limit) as JSON with Retry-After; a location with add_header
    // inherits none from the server, so the security headers are repeated here.
    "error_page 429 = @saas_rate_limited;",
    ...block("location @saas_rate_limited", [
      "default_type application/json;",
      ...headers,
      `add_header Retry-After ${AUTH_RETRY_AFTER_SECONDS} always;`,
      `return 429 '${RATE_LIMITED_BODY}';`,
    ]),
    ...block("location = /health", ["access_log off;", proxyPass]),
    ...AUTH_ROUTES.flatMap((route) => block(`location = ${route}`, [`limit_req zone=${AUTH_LIMIT_ZONE} burst=${AUTH_BURST} nodelay;`, proxyPass])),
    ...block("location /", [proxyPass]),
  ];
}

function block(head: string, body: string[]): string[] {
  return [`${head} {`, ...body.map((line) => (line === "" ? "" : `    ${line}`)), "}"];
}

export function renderNginxFiles(opts: NginxSiteOptions): RenderedFile[] {
  return [
    { path: NGINX_SITE_PATH, content: renderNginxSite(opts), mode: "0644", onChange: "nginx -t -q && systemctl reload nginx" },
    { path: "/etc/logrotate.d/nginx", content: renderNginxLogrotate(), mode: "0644" },
  ];
}

/** Replaces the package's rotation: daily, capped by size too, so a log flood cannot fill the disk. */
export function renderNginxLogrotate(): string {
  return [
    "# Rendered by saas-vps: nginx logs rotate daily or at 100M, 14 kept, compressed.",
    "/var/log/nginx/*.log {",
    "    daily",
    "    maxsize 100M",
    "    rotate 14",
    "    missingok",
    "    notifempty",
    "    compress",
    "    delaycompress",
    "    create 0640 www-data adm",
    "    sharedscripts",
    "    postrotate",
    "        invoke-rc.d nginx rotate >/dev/null 2>&1 || true",
    "    endscript",
    "}",
    "",
  ].join("\n");
}

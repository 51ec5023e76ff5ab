/**
 * Let's Encrypt for the web role when the stack has a domain: the tls-issue command, its
 * sandboxed service, the timer that retries it until DNS points here, the renewal hook, and the
 * first-boot step that gives nginx a certificate to start with.
 */
import type { RenderedFile } from "../files";
import { ACME_WEBROOT, LIB_DIR, TLS_DIR } from "../layout";
import { loadScript } from "../scripts";
import { BASE_SANDBOX, renderUnit, UNIT_DIR } from "../unit";
import type { RoleContribution } from "./contribution";

export interface TlsInput {
  domain: string;
  /** Let's Encrypt contact; the config layer requires it with a domain. */
  acmeEmail: string;
}

export function renderTls(input: TlsInput): RoleContribution {
  return {
    files: tlsFiles(),
    packages: ["certbot", "ssl-cert"],
    steps: ["40-tls"],
    units: ["tls-issue.timer"],
    settings: { ACME_WEBROOT, TLS_DIR, DOMAIN: input.domain, ACME_EMAIL: input.acmeEmail },
  };
}

/**
 * Sandbox of tls-issue.service (certbot, `nginx -t`, `systemctl reload nginx`, as root): no
 * kernel, device, clock or namespace access, a syscall filter, few capabilities. The file system
 * view is left whole (certbot writes /etc/letsencrypt, /var/lib and /var/log/letsencrypt, nginx -t
 * opens its logs) and so is W^X memory (Python's cffi callbacks need it): those are what a run
 * against a real ACME server would have to prove, which we cannot do here. Exposure 3.0 (9.6 bare).
 */
const TLS_ISSUE_SANDBOX: Array<[string, string]> = [
  ...BASE_SANDBOX,
  ["CapabilityBoundingSet", "CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID"],
  ["UMask", "0022"],
  ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
];

function tlsFiles(): RenderedFile[] {
  const issue = `${LIB_DIR}/tls-issue`;
  return [
    { path: issue, content: loadScript("server/tls-issue"), mode: "0755" },
    {
      path: `${UNIT_DIR}/tls-issue.service`,
      content: renderUnit(
        {
          Unit: [["Description", "Get the Let's Encrypt certificate for the site"], ["After", "network-online.target nginx.service"], ["Wants", "network-online.target"]],
          Service: [["Type", "oneshot"], ["ExecStart", issue], ...TLS_ISSUE_SANDBOX],
        },
        "Issues the TLS certificate (renewal is certbot.timer's job)",
      ),
      mode: "0644",
      onChange: "systemctl daemon-reload",
    },
    {
      path: `${UNIT_DIR}/tls-issue.timer`,
      content: renderUnit(
        {
          Unit: [["Description", "Retry getting the TLS certificate until DNS points here"]],
          Timer: [["OnActiveSec", "30s"], ["OnUnitActiveSec", "1h"]],
          Install: [["WantedBy", "timers.target"]],
        },
        "Retries tls-issue hourly; a no-op once the certificate exists",
      ),
      mode: "0644",
      onChange: "systemctl daemon-reload",
    },
    {
      path: "/etc/letsencrypt/renewal-hooks/deploy/50-saas-vps-reload-nginx",
      content: "#!/bin/sh\n# Rendered by saas-vps: serve a renewed certificate without a restart.\nnginx -t -q && systemctl reload nginx\n",
      mode: "0755",
    },
  ];
}

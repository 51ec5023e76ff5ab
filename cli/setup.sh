#!/usr/bin/env bash
# One-command setup for a fresh Debian 12 machine (a developer's or CI's):
# installs the real tools the test suite drives, then the npm dependencies.
# Idempotent: safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, one group per reason, so a reader can see why each is here.
packages=(
  # real-tool checks of rendered files (verification ladder step 2, docs/ARCHITECTURE.md)
  cloud-init nginx shellcheck systemd
  # real PostgreSQL for the app, backups and releases (ladder step 4)
  postgresql postgresql-client
  # backups: encryption + S3 upload on the server, same tool here
  restic zstd
  # JSON in the server's shell tools (release, backup), same tool here
  jq
  # the host firewall: nft checks and loads the rendered rules in test network namespaces
  nftables iproute2 python3
  # fail2ban -t and fail2ban-regex check the rendered jails and the filter against nginx's log
  fail2ban python3-systemd
  # needrestart: its Debian configuration loads the rendered drop-in in a test
  needrestart
  # the metrics exporter: a test runs the binary with the rendered flags (its service is stopped below)
  prometheus-node-exporter
  # load generator for the zero-downtime release test
  wrk curl
  # stand-in for the provider's load balancer (active /health checks) in the drain test
  haproxy
  # the Debian 13 VM (ladder step 5)
  qemu-system-x86 qemu-utils mmdebstrap cloud-image-utils e2fsprogs openssh-client
)

if [ "$(id -u)" -eq 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The package starts its exporter on every address; this machine only runs it inside a test.
    if [[ " ${missing[*]} " == *" prometheus-node-exporter "* ]]; then
      systemctl disable --now prometheus-node-exporter.service >/dev/null 2>&1 || true
    fi
  fi
else
  echo "setup: not root; skipping Debian packages (need: ${packages[*]})" >&2
fi

echo "setup: npm ci (root)"
npm ci --no-audit --no-fund --loglevel=error
if [ -f app/package-lock.json ]; then
  echo "setup: npm ci (app)"
  npm ci --prefix app --no-audit --no-fund --loglevel=error
fi
echo "setup: done"

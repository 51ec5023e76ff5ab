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
  # a real sshd for the day-2 and certificate-sharing scripts' tests (its service is stopped below)
  openssh-server
)
# Valkey (stage scaled's cache server, and the app's shared rate limits): Debian 13 ships it,
# Debian 12 only in bookworm-backports, enabled here for this one package (apt's default
# priority for backports is 100, so nothing else comes from there).
backports=(valkey-server valkey-tools)

# Sets `missing` to those of the named packages that are not installed.
find_missing() {
  missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
}

if [ "$(id -u)" -eq 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  find_missing "${packages[@]}"
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The package starts its exporter on every address; this machine only runs it inside a test.
    if [[ " ${missing[*]} " == *" prometheus-node-exporter "* ]]; then
      systemctl disable --now prometheus-node-exporter.service >/dev/null 2>&1 || true
    fi
    # Tests start sshd on ports of their own.
    if [[ " ${missing[*]} " == *" openssh-server "* ]]; then
      systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
    fi
  fi
  find_missing "${backports[@]}"
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing from bookworm-backports: ${missing[*]}"
    if grep -qx "VERSION_CODENAME=bookworm" /etc/os-release; then
      cat >/etc/apt/sources.list.d/saas-vps-backports.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends -t bookworm-backports "${missing[@]}" >/dev/null
    else
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # Tests start valkey-server on ports and directories of their own.
    systemctl disable --now valkey-server.service >/dev/null 2>&1 || true
  fi
else
  echo "setup: not root; skipping Debian packages (need: ${packages[*]} ${backports[*]})" >&2
fi

echo "setup: npm ci (root)"
npm ci --no-audit --no-fund --loglevel=error
if [ -f app/package-lock.json ]; then
  echo "setup: npm ci (app)"
  npm ci --prefix app --no-audit --no-fund --loglevel=error
fi
echo "setup: done"

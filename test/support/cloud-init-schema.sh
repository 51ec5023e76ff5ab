#!/usr/bin/env bash
# Prints the path of cloud-init's JSON schema (schema-cloud-config-v1.json) as shipped in
# Debian 13 (trixie), which is what our servers run. The host is Debian 12 with an older
# cloud-init, so its own `cloud-init schema` misses keys that only 25.x knows.
#
# The schema comes out of trixie's cloud-init .deb, fetched once with apt in an isolated setup
# (own sources list, lists and cache dirs) so the host's apt state is never touched, and the
# archive is still signature-checked against debian-archive-keyring. Later runs are offline.
#
#   test/support/cloud-init-schema.sh            # path of the schema (fetches on first use)
#   test/support/cloud-init-schema.sh --version  # Debian version of the cloud-init it came from
#   test/support/cloud-init-schema.sh --refresh  # fetch again (a newer trixie point release)
#
# Needs only what every Debian 12 has: apt, dpkg-deb and debian-archive-keyring
# (>= 2023.3+deb12u1, the first with trixie's keys). Cache: $SAAS_VPS_CACHE or
# ~/.cache/saas-vps, under cloud-init-schema/.
set -euo pipefail

SUITE=trixie
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
cache="${SAAS_VPS_CACHE:-$HOME/.cache/saas-vps}/cloud-init-schema"
schema_in_deb=usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json

die() { echo "cloud-init-schema: $*" >&2; exit 1; }

mode=path refresh=0
case "${1:-}" in
  "") ;;
  --version) mode=version ;;
  --refresh) refresh=1 ;;
  *) die "usage: $0 [--version|--refresh]" ;;
esac

# The host's own Debian mirror (deb822 "URIs:" or one-line "deb URI suite"), so a machine
# behind a local mirror uses it too; the security archive is a different tree, skip it.
mirror_uri() {
  local uri
  uri=$({ grep -hsE '^\s*URIs:' /etc/apt/sources.list.d/*.sources | sed -E 's/^\s*URIs:\s*//' | tr ' ' '\n'
          grep -hsE '^\s*deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            | sed -E 's/^\s*deb\s+(\[[^]]*\]\s+)?(\S+).*/\2/'; } \
        | grep -E '/debian/?$' | head -n1)
  echo "${uri:-http://deb.debian.org/debian}"
}

fetch() {
  command -v apt-get >/dev/null || die "needs apt-get (Debian package apt)"
  command -v dpkg-deb >/dev/null || die "needs dpkg-deb (Debian package dpkg)"
  [ -r "$KEYRING" ] || die "missing $KEYRING (apt-get install debian-archive-keyring)"

  local log uri
  uri=$(mirror_uri)
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/fetch.XXXXXX")
  log="$work/apt.log"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/etc"
  touch "$work/status"
  cat >"$work/etc/trixie.sources" <<EOF
Types: deb
URIs: $uri
Suites: $SUITE
Components: main
Signed-By: $KEYRING
EOF
  # Every path apt would read or write is pointed into $work; the host's sources, pins,
  # lists, package cache and dpkg status are neither read nor written. Host apt.conf.d still
  # applies on purpose (a proxy set there is needed here too). The sandbox user is root
  # because _apt cannot enter a cache under /root.
  local apt=(apt-get -q
    -o Dir::Etc::SourceList="$work/etc/trixie.sources" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
    -o Dir::State::Lists="$work/lists" -o Dir::State::status="$work/status"
    -o Dir::Cache="$work" -o Dir::Cache::archives="$work/archives"
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    -o Acquire::Languages=none -o APT::Sandbox::User=root)

  # apt-get update exits 0 when an index fails to download or verify, only warning; so the
  # log decides. A bad signature usually means a debian-archive-keyring older than trixie.
  if ! "${apt[@]}" update >"$log" 2>&1 || grep -qE '^(W|E):' "$log"; then
    die "cannot fetch the $SUITE package index from $uri (offline? debian-archive-keyring too old?):
$(grep -E '^(W|E|Err):' "$log")"
  fi
  (cd "$work" && "${apt[@]}" download cloud-init >>"$log" 2>&1) \
    || die "apt-get download cloud-init failed:
$(cat "$log")"

  local deb version dest
  deb=$(echo "$work"/cloud-init_*.deb)
  version=$(dpkg-deb -f "$deb" Version)
  dest="$cache/$version"
  dpkg-deb -x "$deb" "$work/root"
  [ -f "$work/root/$schema_in_deb" ] || die "$schema_in_deb not found in $(basename "$deb")"
  # Keep only the schema (and where it came from); the rest of the package is not needed.
  rm -rf "$dest" && mkdir -p "$(dirname "$dest/$schema_in_deb")"
  cp "$work/root/$schema_in_deb" "$dest/$schema_in_deb"
  # Written last: a half-done fetch leaves no "current", so the next run starts over.
  echo "$version" >"$cache/current"
}

if [ "$refresh" = 1 ] || [ ! -s "$cache/current" ] || [ ! -f "$cache/$(cat "$cache/current")/$schema_in_deb" ]; then
  fetch
fi
version=$(cat "$cache/current")
case "$mode" in
  path) echo "$cache/$version/$schema_in_deb" ;;
  version) echo "$version" ;;
esac

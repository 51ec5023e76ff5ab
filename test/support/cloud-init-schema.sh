#!/usr/bin/env bash
# Refreshes the pinned copy of cloud-init's JSON schema (schema-cloud-config-v1.json) that the
# tests validate our user-data against: the one Debian 13 (trixie) ships, which is what our
# servers run. The host is Debian 12 with an older cloud-init, whose own `cloud-init schema`
# misses keys that only 25.x knows.
#
# The tests read only the pinned files (test/support/cloud-init/schema-cloud-config-v1.json and
# VERSION, the Debian version of the cloud-init package the schema came from) and never touch the
# network. Run this by hand to move to a newer trixie point release, then review
# `git diff test/support/cloud-init` and run test/provisioning/cloud-init-schema.test.ts.
#
# The schema comes out of trixie's cloud-init .deb, fetched with apt in an isolated setup (own
# sources list, lists and cache dirs in a temporary folder) so the host's apt state is never
# touched, and the archive is still signature-checked against debian-archive-keyring. Needs only
# what every Debian 12 has: apt, dpkg-deb and debian-archive-keyring (>= 2023.3+deb12u1, the
# first with trixie's keys), and network to the Debian mirror.
set -euo pipefail

SUITE=trixie
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PINNED_DIR="$(cd "$(dirname "$0")" && pwd)/cloud-init"
SCHEMA_IN_DEB=usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json

usage() {
  cat <<USAGE
usage: $0
Fetches trixie's cloud-init package and rewrites $PINNED_DIR/schema-cloud-config-v1.json and
$PINNED_DIR/VERSION; prints the version.
USAGE
}

die() { echo "cloud-init-schema: $*" >&2; exit 1; }

# The host's own Debian mirror (deb822 "URIs:" or one-line "deb URI suite"), so a machine
# behind a local mirror uses it too; the security archive is a different tree, skip it.
# awk, not grep: a grep that finds nothing would abort under pipefail.
mirror_uri() {
  local uri
  uri=$(awk '
      /^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i }
      /^[[:space:]]*deb[[:space:]]/ { j = 2; if ($j ~ /^\[/) { while (j <= NF && $j !~ /\]$/) j++; j++ } print $j }
    ' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk '/\/debian\/?$/ { print; exit }')
  echo "${uri:-http://deb.debian.org/debian}"
}

refresh() {
  command -v apt-get >/dev/null || die "needs apt-get (Debian package apt)"
  command -v dpkg-deb >/dev/null || die "needs dpkg-deb (Debian package dpkg)"
  [ -r "$KEYRING" ] || die "missing $KEYRING (apt-get install debian-archive-keyring)"

  local work log uri
  uri=$(mirror_uri)
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: $work is local to this function
  trap "rm -rf '$work'" EXIT
  log="$work/apt.log"
  mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/etc"
  touch "$work/status"
  cat >"$work/etc/trixie.sources" <<SOURCES
Types: deb
URIs: $uri
Suites: $SUITE
Components: main
Signed-By: $KEYRING
SOURCES
  # Every path apt would read or write is pointed into $work; the host's sources, pins,
  # lists, package cache and dpkg status are neither read nor written. Host apt.conf.d still
  # applies on purpose (a proxy set there is needed here too). The sandbox user is root
  # because _apt may not be able to enter the temporary folder.
  local apt=(apt-get -q
    -o Dir::Etc::SourceList="$work/etc/trixie.sources" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
    -o Dir::State::Lists="$work/lists" -o Dir::State::status="$work/status"
    -o Dir::Cache="$work" -o Dir::Cache::archives="$work/archives"
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    -o Acquire::Languages=none -o APT::Sandbox::User=root)

  # apt-get update exits 0 when an index fails to download or verify, only warning; so the
  # log decides. A bad signature usually means a debian-archive-keyring older than trixie.
  if ! "${apt[@]}" update >"$log" 2>&1 || awk '/^(W|E):/ { found = 1 } END { exit !found }' "$log"; then
    die "cannot fetch the $SUITE package index from $uri (offline? debian-archive-keyring too old?):
$(awk '/^(W|E|Err):/' "$log")"
  fi
  (cd "$work" && "${apt[@]}" download cloud-init >>"$log" 2>&1) \
    || die "apt-get download cloud-init failed:
$(cat "$log")"

  local debs version
  debs=("$work"/cloud-init_*.deb)
  if [ "${#debs[@]}" -ne 1 ] || [ ! -f "${debs[0]}" ]; then
    die "expected one cloud-init .deb in $work, found: ${debs[*]}"
  fi
  version=$(dpkg-deb -f "${debs[0]}" Version)
  dpkg-deb -x "${debs[0]}" "$work/root"
  [ -f "$work/root/$SCHEMA_IN_DEB" ] || die "$SCHEMA_IN_DEB not found in $(basename "${debs[0]}")"
  # Both files replaced by rename, schema first: an interrupted refresh never leaves a VERSION
  # that names another schema than the one beside it.
  mkdir -p "$PINNED_DIR"
  cp "$work/root/$SCHEMA_IN_DEB" "$PINNED_DIR/.schema.new"
  echo "$version" >"$PINNED_DIR/.VERSION.new"
  mv -f "$PINNED_DIR/.schema.new" "$PINNED_DIR/schema-cloud-config-v1.json"
  mv -f "$PINNED_DIR/.VERSION.new" "$PINNED_DIR/VERSION"
  echo "$version"
}

case "${1:-}" in
  "") refresh ;;
  -h|--help) usage ;;
  *) usage >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# ops status: one server's health as machine-readable lines, for `npm run ops -- status`
# (cli/ops.ts prints them as a table). Nothing of it is installed on the server: the CLI sends
# this file over SSH on stdin to `sudo bash -s` (root reads the root-only settings below).
#
# Output: one line per check, LEVEL<TAB>CHECK<TAB>DETAIL, LEVEL being OK, WARN or FAIL; a check
# that does not apply to this server is an OK line whose detail starts with "n/a:". Exit status
# 1 when any line is FAIL, else 0.
#
# It reads the server's own rendered settings (what the stack put there, so it knows which
# units, logins and mounts this server has): release.conf (web ports, worker units),
# bootstrap.env (the units first boot enabled, the domain, PostgreSQL here or not),
# watchdog.env (mounts and thresholds: the same ones the watchdog alerts on), and web.env /
# worker.env (the app's database logins). Paths may be overridden from the environment; the
# tests run this very file that way against this machine's real PostgreSQL and nginx:
#   OPS_CONFIG_DIR          default /etc/saas-vps
#   OPS_APP_ROOT            default /srv/app
#   OPS_WATCHDOG_STATE_DIR  default /var/lib/saas-vps/watchdog
#   OPS_PRIVATE_IPV4_FILE   default /run/saas-vps/private-ipv4
#   OPS_HEALTH_URL          default http://127.0.0.1/health, or https://<domain>/health via 127.0.0.1
#   OPS_NGINX_CONF          default nginx's own (/etc/nginx/nginx.conf)
# The local PostgreSQL is reached as the postgres user on its default socket (PGHOST/PGPORT
# from the environment apply).
set -uo pipefail

CONFIG_DIR=${OPS_CONFIG_DIR:-/etc/saas-vps}
APP_ROOT=${OPS_APP_ROOT:-/srv/app}
WATCHDOG_STATE_DIR=${OPS_WATCHDOG_STATE_DIR:-/var/lib/saas-vps/watchdog}
PRIVATE_IPV4_FILE=${OPS_PRIVATE_IPV4_FILE:-/run/saas-vps/private-ipv4}
# Replication lag beyond these many seconds is a WARN, a FAIL (no stack key: no replica exists
# before stage scaled).
LAG_WARN_SECONDS=30
LAG_FAIL_SECONDS=300

FAILS=0

# emit <OK|WARN|FAIL> <check> <detail>: one line; tabs and line breaks in the detail become spaces.
emit() {
  local detail=${3//$'\t'/ }
  detail=${detail//$'\n'/ }
  printf '%s\t%s\t%s\n' "$1" "$2" "$detail"
  if [ "$1" = FAIL ]; then FAILS=$((FAILS + 1)); fi
}

# setting <file> <key>: the value of a KEY=value, KEY="value" or KEY='value' line, never evaluated.
setting() {
  local line
  line=$(grep -m1 "^$2=" "$1" 2>/dev/null) || return 1
  line=${line#*=}
  line=${line#[\"\']}
  line=${line%[\"\']}
  printf '%s' "$line"
}

# The first line of a command's words, for a detail.
first_line() { printf '%s' "${1%%$'\n'*}"; }

# Seconds as "3h" / "2d 4h" / "5 min".
ago() {
  local s=$1
  if [ "$s" -ge 172800 ]; then printf '%dd %dh' $((s / 86400)) $((s % 86400 / 3600))
  elif [ "$s" -ge 7200 ]; then printf '%dh' $((s / 3600))
  else printf '%d min' $((s / 60)); fi
}

unit_line() { # unit
  local unit=$1 out load active sub result type
  case "$unit" in *.*) ;; *) unit=$unit.service ;; esac
  if ! out=$(systemctl show "$unit" -p LoadState -p ActiveState -p SubState -p Result -p Type 2>&1); then
    emit FAIL "unit $unit" "systemctl: $(first_line "$out")"
    return
  fi
  load=$(setting <(printf '%s\n' "$out") LoadState)
  active=$(setting <(printf '%s\n' "$out") ActiveState)
  sub=$(setting <(printf '%s\n' "$out") SubState)
  result=$(setting <(printf '%s\n' "$out") Result)
  type=$(setting <(printf '%s\n' "$out") Type)
  if [ "$load" != loaded ]; then
    emit FAIL "unit $unit" "$load (not installed?)"
  elif [ "$active" = active ]; then
    emit OK "unit $unit" "active ($sub)"
  elif [ "$type" = oneshot ] && [ "$active" = inactive ] && [ "$result" = success ]; then
    emit OK "unit $unit" "inactive (oneshot, last run succeeded)"
  else
    emit FAIL "unit $unit" "$active ($sub), result $result: journalctl -u $unit -n 50"
  fi
}

postgres_here() { [ -n "$(setting "$CONFIG_DIR/bootstrap.env" POSTGRES_CONF)" ]; }

# As the local superuser, on the default socket: one value.
local_sql() { runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -c "$1" 2>&1; }

check_units() {
  local units=() u port clusters version name
  for port in $(setting "$CONFIG_DIR/release.conf" WEB_PORTS); do units+=("web@$port.service"); done
  for u in $(setting "$CONFIG_DIR/release.conf" WORKER_UNITS); do units+=("$u"); done
  for u in $(setting "$CONFIG_DIR/bootstrap.env" ENABLE_UNITS) $(setting "$CONFIG_DIR/bootstrap.env" ENABLE_ONLY_UNITS); do units+=("$u"); done
  units+=(watchdog.timer prometheus-node-exporter.service)
  if postgres_here; then
    # Debian runs each cluster as postgresql@<version>-<name>; postgresql.service only groups them.
    if ! clusters=$(pg_lsclusters --no-header 2>&1) || [ -z "$clusters" ]; then
      emit FAIL "unit postgresql@" "no PostgreSQL cluster: $(first_line "${clusters:-pg_lsclusters lists none}")"
    else
      while read -r version name _; do units+=("postgresql@$version-$name.service"); done <<<"$clusters"
    fi
  fi
  for u in "${units[@]}"; do unit_line "$u"; done
}

uses_nginx() { case " $(setting "$CONFIG_DIR/bootstrap.env" ENABLE_UNITS) " in *" nginx "*) return 0 ;; *) return 1 ;; esac; }

check_nginx() {
  uses_nginx || return 0
  local out
  if out=$(nginx -t ${OPS_NGINX_CONF:+-c "$OPS_NGINX_CONF"} 2>&1); then
    emit OK "nginx -t" "configuration is valid"
  else
    emit FAIL "nginx -t" "$(grep -m1 -E 'emerg|error' <<<"$out" || first_line "$out")"
  fi
}

check_health() {
  uses_nginx || return 0
  local domain url code body release resolve=()
  domain=$(setting "$CONFIG_DIR/bootstrap.env" DOMAIN)
  if [ -n "${OPS_HEALTH_URL:-}" ]; then url=$OPS_HEALTH_URL
  elif [ -n "$domain" ]; then url="https://$domain/health"; resolve=(--resolve "$domain:443:127.0.0.1")
  else url=http://127.0.0.1/health; fi
  local headers
  headers=$(mktemp)
  # -k: this checks the app behind nginx, not the certificate (the watchdog checks that).
  body=$(curl -sS -k -m 10 "${resolve[@]}" -D "$headers" -o - -w '\n%{http_code}' "$url" 2>&1)
  code=${body##*$'\n'}
  body=${body%$'\n'*}
  release=$(awk 'tolower($1) == "x-app-release:" { sub(/\r$/, "", $2); print $2 }' "$headers")
  rm -f "$headers"
  if [ "$code" = 200 ]; then
    emit OK "health via nginx" "$url: 200${release:+, release $release}"
  else
    emit FAIL "health via nginx" "$url: ${code:-no answer} $(first_line "$body" | cut -c1-120)"
  fi
}

# Loopback, or this server's address on the stack's private network.
is_private_address() {
  case "$1" in 127.* | ::1) return 0 ;; esac
  [ -r "$PRIVATE_IPV4_FILE" ] && [ "$1" = "$(cat "$PRIVATE_IPV4_FILE")" ]
}

check_listeners() {
  local out local_address process host port what app_ports
  if ! out=$(ss -Hltnp 2>&1); then
    emit FAIL listeners "ss: $(first_line "$out")"
    return
  fi
  app_ports=" $(setting "$CONFIG_DIR/release.conf" WEB_PORTS) "
  while read -r _ _ _ local_address _ process; do
    [ -n "$local_address" ] || continue
    host=${local_address%:*}
    port=${local_address##*:}
    host=${host#[}
    host=${host%]}
    host=${host%%%*}
    process=$(sed -E 's/^users:\(\("([^"]*)".*/\1/' <<<"$process")
    # What must never face the public: PostgreSQL, the metrics exporter, the app's instances
    # (nginx is their only way in). Known by process or by port.
    what=
    if [ "$process" = postgres ] || [ "$port" = 5432 ]; then what=PostgreSQL
    elif [ "${process#prometheus-node}" != "$process" ] || [ "$port" = 9100 ]; then what="metrics (node exporter)"
    elif [[ "$app_ports" == *" $port "* ]]; then what="app instance"
    fi
    if [ -n "$what" ] && ! is_private_address "$host"; then
      emit FAIL "listen $local_address" "$what ($process) on a public address: it must listen on loopback or the private network only"
    else
      emit OK "listen $local_address" "${process:-?}${what:+: $what}"
    fi
  done < <(sort -u <<<"$out")
}

check_disk() { # check mount threshold%
  local check=$1 mount=$2 threshold=$3 used avail
  if ! mountpoint -q "$mount"; then
    emit FAIL "$check" "$mount is not mounted"
    return
  fi
  read -r used avail < <(df -Ph "$mount" | awk 'NR == 2 { sub(/%/, "", $5); print $5, $4 }')
  if [ "$used" -gt "$threshold" ]; then emit FAIL "$check" "$mount $used% used, $avail free (alert above $threshold%)"
  elif [ "$used" -gt $((threshold - 10)) ]; then emit WARN "$check" "$mount $used% used, $avail free (alert above $threshold%)"
  else emit OK "$check" "$mount $used% used, $avail free"; fi
}

check_memory() { # minimum available %
  local min=$1 total available percent
  read -r total available < <(awk '/^MemTotal:/ { t = $2 } /^MemAvailable:/ { a = $2 } END { print t, a }' /proc/meminfo)
  percent=$((available * 100 / total))
  local detail="$percent% available ($((available / 1024)) of $((total / 1024)) MiB)"
  if [ "$percent" -lt "$min" ]; then emit FAIL memory "$detail; alert below $min%"
  elif [ "$percent" -lt $((min * 2)) ]; then emit WARN memory "$detail; alert below $min%"
  else emit OK memory "$detail"; fi
}

# login_url <env file> <key>: a postgres:// URL of the app's into LOGIN_USER, LOGIN_PASSWORD (still
# percent-encoded) and LOGIN_REST (host:port/db?params, without node-postgres' own options);
# status 1 when the file has no such URL.
login_url() {
  local url
  url=$(setting "$1" "$2")
  [[ $url =~ ^postgres(ql)?://([^:@/]+)(:([^@]*))?@(.+)$ ]] || return 1
  LOGIN_USER=${BASH_REMATCH[2]}
  LOGIN_PASSWORD=${BASH_REMATCH[4]}
  # uselibpqcompat is node-postgres' own option; libpq (psql) refuses options it does not know.
  LOGIN_REST=$(sed -E 's/([?&])uselibpqcompat=[^&]*(&|$)/\1/; s/[?&]$//' <<<"${BASH_REMATCH[5]}")
}

# login_sql <sql>: one row, as the login login_url read, from this server, with psql. The password
# travels in the environment (root's own), never on a command line.
login_sql() {
  PGPASSWORD=$(printf '%b' "${LOGIN_PASSWORD//%/\\x}") PGCONNECT_TIMEOUT=5 \
    psql "postgresql://$LOGIN_USER@$LOGIN_REST" -XAtq -v ON_ERROR_STOP=1 -c "$1" 2>&1 </dev/null
}

# As the app's processes connect: the URL of their login file, from this server, with psql.
check_database_login() { # name env-file
  local name=$1 file=$2 out
  if ! login_url "$file" DATABASE_URL; then
    emit FAIL "database as $name" "$file has no postgres:// DATABASE_URL"
    return
  fi
  if ! command -v psql >/dev/null; then
    emit FAIL "database as $name" "psql is not installed (postgresql-client)"
    return
  fi
  if out=$(login_sql "select current_setting('server_version')"); then
    emit OK "database as $name" "$LOGIN_USER@${LOGIN_REST%%\?*}: connected (PostgreSQL $out)"
  else
    emit FAIL "database as $name" "$LOGIN_USER@${LOGIN_REST%%\?*}: $(first_line "$out")"
  fi
}

check_database() {
  local found=no name out
  for name in web worker; do
    [ -r "$CONFIG_DIR/$name.env" ] || continue
    found=yes
    check_database_login "$name" "$CONFIG_DIR/$name.env"
  done
  if postgres_here; then
    found=yes
    if out=$(local_sql "select current_setting('server_version')"); then emit OK "database local" "postgres on the local socket: connected (PostgreSQL $out)"
    else emit FAIL "database local" "postgres on the local socket: $(first_line "$out")"; fi
  fi
  [ "$found" = yes ] || emit OK database "n/a: no app login and no PostgreSQL on this server"
}

check_replication() {
  if ! postgres_here; then
    emit OK replication "n/a: no PostgreSQL on this server"
    return
  fi
  local out replicas lag
  if ! out=$(local_sql "select pg_is_in_recovery()"); then
    emit FAIL replication "$(first_line "$out")"
    return
  fi
  if [ "$out" = t ]; then
    local streaming caught_up
    # The age of the last replayed transaction is a lag only while there is more to replay: on a
    # replica that has replayed all it received from a primary with nothing to send, it is just
    # the time since the last write. And a replica that no longer streams has replayed all it
    # received, too: the receiver says which.
    read -r streaming caught_up lag < <(local_sql "select (select count(*) from pg_stat_wal_receiver where status = 'streaming'),
      coalesce(pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), false),
      coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp())::int, -1)" | tr '|' ' ')
    [ "${streaming:-0}" != 0 ] || { emit FAIL replication "replica: not streaming from the primary (see its PostgreSQL log)"; return; }
    [ "$caught_up" != t ] || { emit OK replication "lag 0s (replayed all it received)"; return; }
    [ "$lag" != -1 ] || { emit WARN replication "replica: nothing replayed yet"; return; }
  else
    read -r replicas lag < <(local_sql "select count(*), coalesce(max(extract(epoch from replay_lag))::int, 0) from pg_stat_replication" | tr '|' ' ')
    if [ "${replicas:-0}" = 0 ]; then
      emit OK replication "n/a: primary with no replica"
      return
    fi
  fi
  if [ "$lag" -gt "$LAG_FAIL_SECONDS" ]; then emit FAIL replication "lag ${lag}s (above ${LAG_FAIL_SECONDS}s)"
  elif [ "$lag" -gt "$LAG_WARN_SECONDS" ]; then emit WARN replication "lag ${lag}s (above ${LAG_WARN_SECONDS}s)"
  else emit OK replication "lag ${lag}s"; fi
}

# The read replica as the web processes see it (DATABASE_READ_URL, stage scaled): with their own
# login and the judgement of the app's read route (app/src/db/read-route.ts), which that login may
# read without pg_read_all_stats. So the lag shows for a managed cluster's read-only node too, where
# no server of the stack runs the replica's PostgreSQL and only the app's logins get in.
check_read_replica() {
  local file=$CONFIG_DIR/web.env out where standby receiving replayed lag detail
  if [ ! -r "$file" ] || ! setting "$file" DATABASE_READ_URL >/dev/null; then
    emit OK "read replica" "n/a: no DATABASE_READ_URL here (every read goes to the primary)"
    return
  fi
  if ! login_url "$file" DATABASE_READ_URL; then
    emit FAIL "read replica" "$file has a DATABASE_READ_URL that is not a postgres:// URL with a login"
    return
  fi
  where="$LOGIN_USER@${LOGIN_REST%%\?*}"
  if ! out=$(login_sql "select pg_is_in_recovery(), exists (select 1 from pg_stat_wal_receiver where pid is not null),
      coalesce(pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), false),
      coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp())::int, -1)"); then
    emit FAIL "read replica" "$where: $(first_line "$out") (the app reads on the primary meanwhile)"
    return
  fi
  read -r standby receiving replayed lag < <(tr '|' ' ' <<<"$out")
  if [ "$standby" != t ]; then emit FAIL "read replica" "$where: not a standby (promoted?); the app reads on the primary"; return; fi
  if [ "$receiving" = t ] && [ "$replayed" = t ]; then emit OK "read replica" "$where: lag 0s (replayed all it received)"; return; fi
  [ "$lag" != -1 ] || { emit WARN "read replica" "$where: nothing replayed yet"; return; }
  # Not receiving: the age of the last replayed transaction is all there is to go by (see check_replication).
  detail="$where: lag ${lag}s"
  [ "$receiving" = t ] || detail+=" (not receiving from the primary)"
  if [ "$lag" -gt "$LAG_FAIL_SECONDS" ]; then emit FAIL "read replica" "$detail, above ${LAG_FAIL_SECONDS}s"
  elif [ "$lag" -gt "$LAG_WARN_SECONDS" ]; then emit WARN "read replica" "$detail, above ${LAG_WARN_SECONDS}s"
  else emit OK "read replica" "$detail"; fi
}

# backup_age <check> <state file> <max seconds> <what>: as the watchdog judges it.
backup_age() {
  local check=$1 file=$2 max=$3 what=$4 now age
  now=$(date +%s)
  if [ -e "$file" ]; then
    age=$((now - $(stat -c %Y "$file")))
    if [ "$age" -gt "$max" ]; then emit FAIL "$check" "last good $what $(ago "$age") ago (alert after $(ago "$max"))"
    else emit OK "$check" "last good $what $(ago "$age") ago"; fi
  elif [ -e "$WATCHDOG_STATE_DIR/since" ] && [ $((now - $(stat -c %Y "$WATCHDOG_STATE_DIR/since"))) -gt "$max" ]; then
    emit FAIL "$check" "no good $what recorded in $(ago $((now - $(stat -c %Y "$WATCHDOG_STATE_DIR/since"))))"
  else
    emit WARN "$check" "no good $what recorded yet"
  fi
}

check_backups() { # state dir, max hours, max drill days
  if [ -z "$1" ]; then
    emit OK backup "n/a: this server takes no backups"
    return
  fi
  backup_age backup "$1/last-success" $(($2 * 3600)) backup
  backup_age restore-drill "$1/last-drill" $(($3 * 86400)) "restore drill"
}

check_release() {
  if [ ! -r "$CONFIG_DIR/release.conf" ]; then
    emit OK release "n/a: the app does not run on this server"
    return
  fi
  local current id
  if ! current=$(readlink -e "$APP_ROOT/current"); then
    emit FAIL release "no current release ($APP_ROOT/current): ship one with pulumi up"
    return
  fi
  id=$(jq -r '.id // empty' "$current/manifest.json" 2>/dev/null)
  emit OK release "${id:-${current##*/}} (since $(date -u -d "@$(stat -c %Y "$APP_ROOT/current")" +%FT%TZ))"
}

check_alerts() {
  local state found=no
  for state in "$WATCHDOG_STATE_DIR"/firing/*; do
    [ -e "$state" ] || continue
    found=yes
    emit FAIL "alert ${state##*/}" "firing since $(date -u -d "@$(stat -c %Y "$state")" +%FT%TZ): $(first_line "$(cat "$state")")"
  done
  [ "$found" = yes ] || emit OK alerts "none firing"
}

main() {
  # The script itself arrives on stdin: nothing below may read it.
  exec </dev/null
  cd /
  local env=$CONFIG_DIR/watchdog.env data_mount disk_percent memory_percent
  if [ ! -r "$env" ]; then emit WARN watchdog "cannot read $env: thresholds are the defaults (first push not done yet?)"; fi
  data_mount=$(setting "$env" DATA_MOUNT)
  disk_percent=$(setting "$env" DISK_PERCENT || echo 85)
  memory_percent=$(setting "$env" MEMORY_AVAILABLE_PERCENT || echo 10)
  check_units
  check_nginx
  check_health
  check_listeners
  check_disk disk-root / "$disk_percent"
  if [ -n "$data_mount" ]; then check_disk disk-data "$data_mount" "$disk_percent"; fi
  check_memory "$memory_percent"
  check_database
  check_replication
  check_read_replica
  check_backups "$(setting "$env" BACKUP_STATE_DIR)" "$(setting "$env" BACKUP_MAX_AGE_HOURS || echo 26)" "$(setting "$env" DRILL_MAX_AGE_DAYS || echo 8)"
  check_release
  check_alerts
  [ "$FAILS" -eq 0 ]
}

main "$@"

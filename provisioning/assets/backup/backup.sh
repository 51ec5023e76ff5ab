#!/usr/bin/env bash
# backup: encrypted PostgreSQL backups to the off-server bucket (saas-vps; docs/ARCHITECTURE.md, decision 6).
# Installed as /usr/local/sbin/backup; backup.service runs "backup now" and
# restore-drill.service runs "backup drill"; when either fails, alert@<unit>.service reports it
# ("watchdog alert <unit>", provisioning/assets/watchdog/watchdog). The commands are listed in
# usage() (the shipped copy has no comments, see provisioning/scripts.ts).
#
# JSON (restic's --json output) is read through jq, never grep.
#
# Why restic rather than age + aws-cli: restic encrypts on this server (AES-256-CTR +
# Poly1305, key derived from the password with scrypt), streams stdin straight to S3 in
# 16 MiB packs, deduplicates across nights (an unchanged table costs nothing the next
# night), compresses with zstd, and implements retention, restore and integrity checks
# itself. age + aws-cli would need our own naming, listing, retention and verification code.
# pg_dump runs with --compress=0 so that restic's content-defined chunking can deduplicate
# the dump and zstd (faster than pg_dump's zlib) does the compression.
#
# Configuration and secrets come only from the env file (root-only, 0600), never from the
# command line. Paths and the PostgreSQL connection may be overridden from the environment;
# the tests run this very file that way:
#   BACKUP_ENV_FILE    default /etc/saas-vps/backup.env
#   BACKUP_STATE_DIR   default /var/lib/saas-vps/backup (last-success, last-drill)
#   BACKUP_CACHE_DIR   default /var/cache/saas-vps/restic (restic's metadata cache)
#   BACKUP_PG_OS_USER  OS user that runs pg_dump/pg_restore/psql when run as root
#                      (default postgres: local socket, peer auth; empty: current user)
#   PGHOST, PGPORT, PGUSER and the rest of libpq's variables
# A database on another host (a managed cluster) is named in the env file instead
# (BACKUP_DB_HOST and the rest, see load_remote_database): the tools then run as the current
# user, over TCP with a verified TLS connection, as that login.
set -euo pipefail
umask 077
cd /

PROG=backup
ENV_FILE=${BACKUP_ENV_FILE:-/etc/saas-vps/backup.env}
STATE_DIR=${BACKUP_STATE_DIR:-/var/lib/saas-vps/backup}
CACHE_DIR=${BACKUP_CACHE_DIR:-/var/cache/saas-vps/restic}
PG_OS_USER=${BACKUP_PG_OS_USER-postgres}
# Where createdb/dropdb and catalog queries connect; a remote login may reach only its database.
MAINT_DB=postgres
DRILL_MIN_ROWS=${BACKUP_DRILL_MIN_ROWS:-1000}

# When stderr is the journal (systemd sets JOURNAL_STREAM to its device:inode), a "<3>"
# prefix makes journald store the line at priority "err" (sd-daemon(3), SyslogLevelPrefix=).
ERR_PREFIX=
if [ -n "${JOURNAL_STREAM:-}" ] && [ "$(stat -L -c '%d:%i' "/proc/$$/fd/2" 2>/dev/null)" = "$JOURNAL_STREAM" ]; then
  ERR_PREFIX='<3>'
fi

log() { printf '%s: %s\n' "$PROG" "$*"; }
err() { printf '%s%s: %s\n' "$ERR_PREFIX" "$PROG" "$*" >&2; }
die() { err "$*"; exit 1; }

help_text() {
  cat <<'EOF'
usage: backup now                       back up the database now (dump, encrypt, upload), record
                                        it, apply retention, ping the heartbeat
       backup list                      list the backups in the bucket
       backup restore <id> [--into DB]  restore backup <id> or "latest" into a NEW database
                                        (never overwrites one)
       backup restore-app [<id>]        restore backup <id> (default: the latest) into the app
                                        database of a fresh db server, as its owner; refuses a
                                        database that has tables (moving from mvp: README)
       backup tables                    every table of the app database with its exact row count
       backup drill                     test-restore the latest backup into a scratch database,
                                        check it, time it, drop it
       backup help                      this text
settings and secrets: /etc/saas-vps/backup.env (root-only)
EOF
}
usage() {
  help_text >&2
  exit 2
}

load_config() {
  [ -r "$ENV_FILE" ] || die "cannot read $ENV_FILE (it is root-only: run as root)"
  # shellcheck source=/dev/null
  . "$ENV_FILE"
  local v
  for v in RESTIC_REPOSITORY RESTIC_PASSWORD AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY \
    AWS_DEFAULT_REGION BACKUP_DB_NAME BACKUP_RETENTION_DAYS; do
    [ -n "${!v:-}" ] || die "$ENV_FILE: $v is not set"
    # Keep secrets away from every other process (pg_dump runs as another user).
    export -n "${v?}"
  done
  BACKUP_MIGRATIONS_TABLE=${BACKUP_MIGRATIONS_TABLE:-pgmigrations}
  BACKUP_HEARTBEAT_URL=${BACKUP_HEARTBEAT_URL:-}
  export -n BACKUP_HEARTBEAT_URL
  DUMP_NAME="$BACKUP_DB_NAME.dump"
  DUMP_PATH="/$DUMP_NAME" # restic stores stdin as /<stdin-filename>
  load_remote_database
}

# A database on another host: libpq's settings exported (none is secret), the password kept to
# this shell and handed to each pg tool alone (as_remote_login).
load_remote_database() {
  BACKUP_DB_HOST=${BACKUP_DB_HOST:-}
  [ -n "$BACKUP_DB_HOST" ] || return 0
  local v
  for v in BACKUP_DB_PORT BACKUP_DB_USER BACKUP_DB_PASSWORD BACKUP_DB_SSLMODE BACKUP_DB_SSLROOTCERT; do
    [ -n "${!v:-}" ] || die "$ENV_FILE: $v is not set (BACKUP_DB_HOST names a remote database)"
    export -n "${v?}"
  done
  case "$BACKUP_DB_SSLMODE" in
    verify-ca | verify-full) ;;
    *) die "$ENV_FILE: BACKUP_DB_SSLMODE must be verify-ca or verify-full; got \"$BACKUP_DB_SSLMODE\"" ;;
  esac
  BACKUP_DB_PORT=${BACKUP_DB_PORT:?}
  [ -r "$BACKUP_DB_SSLROOTCERT" ] || die "cannot read $BACKUP_DB_SSLROOTCERT, the CA certificate of the database server"
  export PGHOST=$BACKUP_DB_HOST PGPORT=$BACKUP_DB_PORT PGUSER=$BACKUP_DB_USER
  export PGSSLMODE=$BACKUP_DB_SSLMODE PGSSLROOTCERT=$BACKUP_DB_SSLROOTCERT
  PG_OS_USER=
  MAINT_DB=$BACKUP_DB_NAME
}

as_remote_login() { PGPASSWORD=$BACKUP_DB_PASSWORD "$@"; }

# restic with the repository credentials in its environment only (not in argv, not exported).
restic_() {
  local region=$AWS_DEFAULT_REGION
  RESTIC_REPOSITORY=$RESTIC_REPOSITORY RESTIC_PASSWORD=$RESTIC_PASSWORD \
    AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
    AWS_DEFAULT_REGION=$AWS_DEFAULT_REGION RESTIC_CACHE_DIR=$CACHE_DIR \
    restic -o "s3.region=$region" "$@"
}

# PostgreSQL client tools as the database OS user (peer auth over the local socket).
as_pg() {
  if [ -n "${BACKUP_DB_HOST:-}" ]; then
    as_remote_login "$@"
  elif [ "$(id -u)" -eq 0 ] && [ -n "$PG_OS_USER" ]; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}
psql_() { as_pg psql -X -q -At -v ON_ERROR_STOP=1 --no-password "$@"; }

db_exists() {
  [ "$(psql_ -d "$MAINT_DB" -v db="$1" <<<"select count(*) from pg_database where datname = :'db'")" = 1 ]
}

# curl with the URL in a config read from a pipe: heartbeat URLs carry tokens.
curl_url() {
  local url=$1
  shift
  url=${url//\\/\\\\}
  curl -K <(printf 'url = "%s"\n' "${url//\"/\\\"}") "$@"
}

# The repository location without credentials, for logs.
repo_display() { printf '%s' "${RESTIC_REPOSITORY%%\?*}"; }

# Snapshot ids from `restic snapshots --json` output (an array) on stdin, one a line.
json_ids() { jq -r '.[]?.id // empty'; }

write_state() { # file, then key=value lines on stdin; atomic replace
  local tmp
  tmp=$(mktemp "$STATE_DIR/.$1.XXXXXX")
  cat >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$STATE_DIR/$1"
}

# Seconds since $1 (an ${EPOCHREALTIME/./} value), with milliseconds.
elapsed() {
  local ms=$(((${EPOCHREALTIME/./} - $1) / 1000))
  printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

ensure_repository() {
  # A good backup to this repository is on record: it exists; skip a round trip.
  if grep -qxF "repository=$(repo_display)" "$STATE_DIR/last-success" 2>/dev/null; then
    return 0
  fi
  local out rc=0
  out=$(restic_ cat config 2>&1 >/dev/null) || rc=$?
  [ "$rc" -eq 0 ] && return 0
  # Only a missing config object means "no repository yet"; restic >= 0.17 exits 10 for it.
  # Anything else (unreachable, bad keys, wrong password) must fail, never re-initialise.
  if [ "$rc" -eq 10 ] || grep -q -i -e 'specified key does not exist' -e 'NoSuchKey' <<<"$out"; then
    log "no repository at $(repo_display) yet: initialising it"
    restic_ init --quiet || die "backup FAILED: could not initialise the repository at $(repo_display)"
    return 0
  fi
  die "backup FAILED: cannot open the repository at $(repo_display): $(head -n 1 <<<"$out")"
}

enforce_retention() {
  log "retention: removing backups older than $BACKUP_RETENTION_DAYS days, then pruning"
  # --keep-within counts back from the newest snapshot (the one just made), so an outage
  # never makes retention delete the last good backups.
  local forget=(forget --quiet --path "$DUMP_PATH" --group-by paths --keep-within "${BACKUP_RETENTION_DAYS}d" --prune)
  local out
  if out=$(restic_ "${forget[@]}" 2>&1); then
    [ -z "$out" ] || printf '%s\n' "$out"
    return 0
  fi
  printf '%s\n' "$out" >&2
  grep -q 'already locked' <<<"$out" || return 1
  # A run killed mid-way leaves a lock behind; unlock removes only stale ones.
  log "the repository is locked: removing stale locks and retrying"
  restic_ unlock --quiet || true
  restic_ "${forget[@]}"
}

ping_heartbeat() {
  [ -n "$BACKUP_HEARTBEAT_URL" ] || return 0
  if curl_url "$BACKUP_HEARTBEAT_URL" -fsS -m 15 --retry 3 -o /dev/null; then
    log "heartbeat sent"
  else
    err "warning: the heartbeat ping failed; the backup itself succeeded"
  fi
}

cmd_now() {
  [ $# -eq 0 ] || usage
  load_config
  skip_if_standby
  mkdir -p "$STATE_DIR" "$CACHE_DIR"
  ensure_repository
  local tag t0 summary status
  tag="run-$(date -u +%Y%m%dT%H%M%SZ)-$$"
  summary=$(mktemp "$STATE_DIR/.summary.XXXXXX")
  t0=${EPOCHREALTIME/./}
  log "dumping database $BACKUP_DB_NAME, encrypting and uploading to $(repo_display)"
  set +e
  as_pg pg_dump --format=custom --compress=0 --no-password "$BACKUP_DB_NAME" |
    restic_ backup --quiet --json --stdin --stdin-filename "$DUMP_NAME" --tag saas-vps --tag "$tag" >"$summary"
  status=("${PIPESTATUS[@]}")
  set -e
  # One JSON object a line; the summary's is the one with the snapshot. Lines that are not JSON
  # (a restic dying mid-line) are skipped, so a failed run leaves snap empty.
  local snap="" bytes="" added="" fields
  fields=$(jq -Rr 'fromjson? | select(.message_type == "summary") | [.snapshot_id // "", .total_bytes_processed // 0, .data_added // 0] | @tsv' "$summary" | tail -n 1)
  IFS=$'\t' read -r snap bytes added <<<"$fields" || true
  rm -f "$summary"
  if [ "${status[0]}" -ne 0 ] || [ "${status[1]}" -ne 0 ] || [ -z "$snap" ]; then
    # restic saves whatever it read before EOF: a failed pg_dump leaves a truncated snapshot.
    local partial
    partial=$(restic_ snapshots --json --tag "$tag" 2>/dev/null | json_ids) || partial=""
    if [ -n "$partial" ]; then
      # shellcheck disable=SC2086 # one id per word
      restic_ forget --quiet $partial >/dev/null ||
        err "could not remove the partial snapshot tagged $tag; remove it by hand"
    fi
    die "backup FAILED: pg_dump exited ${status[0]}, restic exited ${status[1]}; nothing was recorded as a good backup"
  fi
  # restic exits 0 only after the data, the index and then the snapshot are in the bucket.
  local secs
  secs=$(elapsed "$t0")
  printf 'snapshot=%s\nrepository=%s\ndatabase=%s\nfinished=%s\nseconds=%s\ndump_bytes=%s\nuploaded_bytes=%s\n' \
    "$snap" "$(repo_display)" "$BACKUP_DB_NAME" "$(date -u +%FT%TZ)" "$secs" "${bytes:-0}" "${added:-0}" |
    write_state last-success
  log "backup OK: snapshot $snap of $BACKUP_DB_NAME in ${secs}s; dump $((${bytes:-0} / 1000000)) MB, $((${added:-0} / 1000000)) MB new in the bucket"
  enforce_retention || die "backup $snap is good, but applying retention FAILED"
  ping_heartbeat
}

cmd_list() {
  [ $# -eq 0 ] || usage
  load_config
  restic_ snapshots --path "$DUMP_PATH"
  if [ -r "$STATE_DIR/last-success" ]; then
    echo "last good backup recorded on this server:"
    sed 's/^/  /' "$STATE_DIR/last-success"
  fi
}

# Streams one snapshot into an existing database. Extra arguments go to pg_restore.
restore_into() {
  local id=$1 db=$2
  shift 2
  local status
  set +e
  restic_ dump --quiet --path "$DUMP_PATH" "$id" "$DUMP_PATH" |
    as_pg pg_restore --exit-on-error --no-password -d "$db" "$@"
  status=("${PIPESTATUS[@]}")
  set -e
  if [ "${status[0]}" -ne 0 ] || [ "${status[1]}" -ne 0 ]; then
    err "restore of backup $id into $db FAILED: restic dump exited ${status[0]}, pg_restore exited ${status[1]}"
    return 1
  fi
}

valid_db_name() { [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_-]{0,62}$ ]]; }

RESTORE_DB=
drop_restore_db() {
  local rc=$?
  if [ -n "$RESTORE_DB" ]; then
    as_pg dropdb --maintenance-db="$MAINT_DB" --if-exists --force "$RESTORE_DB" || err "could not drop database $RESTORE_DB"
  fi
  exit "$rc"
}

cmd_restore() {
  local id="" into=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --into) [ $# -ge 2 ] || usage; into=$2; shift 2 ;;
      --into=*) into=${1#--into=}; shift ;;
      -*) usage ;;
      *) [ -z "$id" ] || usage; id=$1; shift ;;
    esac
  done
  [ -n "$id" ] || usage
  [[ $id =~ ^(latest|[0-9a-f]{8,64})$ ]] || die "backup id must be \"latest\" or a hex id from \"backup list\"; got \"$id\""
  load_config
  into=${into:-${BACKUP_DB_NAME}_restored_$(date -u +%Y%m%d_%H%M%S)}
  valid_db_name "$into" || die "--into: \"$into\" is not a plain database name (letters, digits, _ and -)"
  db_exists "$into" && die "database $into already exists; restore never overwrites a database: choose another --into or drop it first"
  local owner=""
  if db_exists "$BACKUP_DB_NAME"; then
    owner=$(psql_ -d "$MAINT_DB" -v db="$BACKUP_DB_NAME" <<<"select pg_get_userbyid(datdba) from pg_database where datname = :'db'")
  fi
  as_pg createdb --maintenance-db="$MAINT_DB" ${owner:+"--owner=$owner"} "$into"
  RESTORE_DB=$into
  trap drop_restore_db EXIT
  local started=$SECONDS
  log "restoring backup $id into new database $into"
  restore_into "$id" "$into" || die "restore FAILED; the incomplete database $into is dropped"
  RESTORE_DB=
  log "restored backup $id into database $into in $((SECONDS - started))s"
  log "to switch the app to it: stop the app, rename the databases (ALTER DATABASE ... RENAME TO ...), start the app"
}

# ---- Moving from mvp (README "Moving from mvp to separated"): filling a fresh db server's app
# database from the latest backup, the row counts both sides compare, and the standby switch.

# A db server whose database is not the app's yet (BACKUP_STANDBY=yes, rendered while the stack's
# old mvp server still holds the data) must not back up: its snapshot of an empty or half-filled
# database would become the repository's "latest" and be what retention keeps and restores find.
# Timers keep firing, so this is a quiet success, not an alert.
skip_if_standby() {
  [ "${BACKUP_STANDBY:-no}" = yes ] || return 0
  log "skipped: this server's database is not the app's database yet (the stack is moving from mvp, saas-vps:mvpDatabase is live); the app server backs the app up"
  exit 0
}

# Tables, views and sequences of non-system schemas in database $1, one "schema.name (kind)" a line.
user_relations() {
  psql_ -d "$1" <<'SQL'
select format('%I.%I (%s)', n.nspname, c.relname,
       case c.relkind when 'r' then 'table' when 'p' then 'table' when 'v' then 'view'
                      when 'm' then 'materialized view' when 'S' then 'sequence' else 'relation' end)
from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p', 'v', 'm', 'S')
  and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\_%'
order by 1;
SQL
}

# "<id><TAB><time><TAB><host>" of backup $1 ("latest" or an id) of the app database; empty if
# there is none. A repository that cannot be read is an error, never "no backup".
find_snapshot() {
  local snaps errors
  errors=$(mktemp)
  if ! snaps=$(restic_ snapshots --json --path "$DUMP_PATH" "$1" 2>"$errors"); then
    err "cannot list the backups in $(repo_display): $(grep -m 1 . "$errors")"
    rm -f "$errors"
    return 1
  fi
  rm -f "$errors"
  jq -r 'last // empty | [.id, .time, .hostname] | @tsv' <<<"$snaps"
}

# Restores into the app database that the db server's first boot made (owner, logins, grants and
# default privileges in place, no tables), as that owner: pg_restore runs SET ROLE <owner>, so every
# object is the owner's, exactly as if the owner's migrations had made it. No ownership and no
# grants are taken from the dump (an mvp dump has one owner and none of these logins' rights):
# the owner's default privileges, set by the first-boot PostgreSQL step, give the web and worker
# logins their rights on each table and sequence as it is created. One transaction: a restore
# that fails leaves the database as empty as it was, ready for another try.
cmd_restore_app() {
  [ $# -le 1 ] || usage
  local id=${1:-latest}
  [[ $id =~ ^(latest|[0-9a-f]{8,64})$ ]] || die "backup id must be \"latest\" or a hex id from \"backup list\"; got \"$id\""
  load_config
  mkdir -p "$CACHE_DIR"
  local db=$BACKUP_DB_NAME
  db_exists "$db" || die "database $db does not exist here: restore-app fills the app database a db server's first boot makes; run it on the db server"
  local owner found
  owner=$(psql_ -d postgres -v db="$db" <<<"select pg_get_userbyid(datdba) from pg_database where datname = :'db'")
  found=$(user_relations "$db") || die "cannot list the tables of database $db"
  if [ -n "$found" ]; then
    local count shown
    count=$(wc -l <<<"$found")
    shown=$(head -n 5 <<<"$found" | paste -sd';' - | sed 's/;/, /g')
    [ "$count" -le 5 ] || shown+=", ..."
    die "database $db is not empty: it has $count tables, views or sequences ($shown); restore-app never writes over data. To restore next to it: backup restore $id --into <new name>"
  fi
  local snapshot snap="" snap_time="" snap_host=""
  snapshot=$(find_snapshot "$id") || exit 1
  IFS=$'\t' read -r snap snap_time snap_host <<<"$snapshot" || true
  [ -n "$snap" ] || die "no backup $([ "$id" = latest ] || printf '%s ' "$id")of database $db in $(repo_display): nothing restored"
  log "restoring backup ${snap:0:8} (made $snap_time on $snap_host) into database $db as its owner $owner"
  local t0 secs
  t0=${EPOCHREALTIME/./}
  restore_into "$snap" "$db" --role="$owner" --no-owner --no-acl --single-transaction ||
    die "restore FAILED; database $db is left empty (the restore ran in one transaction)"
  # pg_restore leaves the planner without statistics: the app's first queries would be planned blind.
  psql_ -d "$db" -c analyze || err "warning: analyze of $db failed; autovacuum will catch up"
  secs=$(elapsed "$t0")
  log "restored backup ${snap:0:8} into database $db in ${secs}s; its tables and row counts:"
  table_counts "$db" | sed -e 's/^/  /' -e 's/\t/: /'
  log "compare with \"backup tables\" on the server the backup came from ($snap_host) before switching the app over"
}

cmd_tables() {
  [ $# -eq 0 ] || usage
  load_config
  table_counts "$BACKUP_DB_NAME" | sed 's/\t/: /'
}

DRILL_DB=
DRILL_REPORTED=
drill_cleanup() {
  local rc=$?
  if [ -n "$DRILL_DB" ]; then
    if as_pg dropdb --maintenance-db="$MAINT_DB" --if-exists --force "$DRILL_DB"; then
      log "dropped scratch database $DRILL_DB"
    else
      err "could not drop scratch database $DRILL_DB: drop it by hand"
      rc=1
    fi
  fi
  [ "$rc" -eq 0 ] || [ -n "$DRILL_REPORTED" ] || err "RESTORE DRILL FAILED (exit $rc); see the lines above"
  exit "$rc"
}
drill_fail() {
  DRILL_REPORTED=1
  err "RESTORE DRILL FAILED: $*"
  exit 1
}

# "schema.table<TAB>exact row count" for every table in database $1.
table_counts() {
  psql_ -d "$1" -F $'\t' <<'SQL'
select format('%I.%I', schemaname, tablename),
       (xpath('/row/c/text()', query_to_xml(format('select count(*) as c from %I.%I',
         schemaname, tablename), false, true, '')))[1]::text::bigint
from pg_catalog.pg_tables
where schemaname not in ('pg_catalog', 'information_schema')
order by 1;
SQL
}

# "schema.table<TAB>estimated rows" in the live database (cheap: planner statistics).
live_estimates() {
  psql_ -d "$BACKUP_DB_NAME" -F $'\t' <<'SQL'
select format('%I.%I', n.nspname, c.relname), greatest(c.reltuples, 0)::bigint
from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg_toast%';
SQL
}

cmd_drill() {
  [ $# -eq 0 ] || usage
  load_config
  skip_if_standby
  mkdir -p "$STATE_DIR" "$CACHE_DIR"
  trap drill_cleanup EXIT
  local snaps snap="" snap_time="" latest
  snaps=$(restic_ snapshots --json --path "$DUMP_PATH" latest) ||
    drill_fail "cannot list backups in $(repo_display)"
  latest=$(jq -r 'last // empty | [.id, .time] | @tsv' <<<"$snaps") ||
    drill_fail "restic's list of backups is not the JSON array it should be"
  IFS=$'\t' read -r snap snap_time <<<"$latest" || true
  [ -n "$snap" ] || drill_fail "no backup of $BACKUP_DB_NAME in $(repo_display)"

  DRILL_DB="backup_drill_$(date -u +%Y%m%d%H%M%S)_$$"
  as_pg createdb --maintenance-db="$MAINT_DB" "$DRILL_DB" || drill_fail "cannot create scratch database $DRILL_DB"
  log "restore drill: restoring backup ${snap:0:8} ($snap_time) into scratch database $DRILL_DB"
  local t0 secs
  t0=${EPOCHREALTIME/./}
  restore_into "$snap" "$DRILL_DB" --no-owner --no-acl || drill_fail "backup ${snap:0:8} does not restore"
  secs=$(elapsed "$t0")

  local counts tables=0 rows=0 name n
  counts=$(table_counts "$DRILL_DB") || drill_fail "the restored database does not open"
  declare -A restored=()
  while IFS=$'\t' read -r name n; do
    [ -n "$name" ] || continue
    restored[$name]=$n
    tables=$((tables + 1))
    rows=$((rows + n))
  done <<<"$counts"
  [ "$tables" -gt 0 ] || drill_fail "the restored database has no tables"
  [ "$rows" -gt 0 ] || drill_fail "the restored database has $tables tables but no rows at all"

  local mig
  mig=$(psql_ -d "$DRILL_DB" -v t="$BACKUP_MIGRATIONS_TABLE" <<<"select coalesce(to_regclass(:'t')::text, '')") ||
    drill_fail "cannot look up the migrations table"
  [ -n "$mig" ] || drill_fail "migrations table $BACKUP_MIGRATIONS_TABLE is missing from the restore"
  [ "${restored[$mig]:-${restored[public.$mig]:-0}}" -gt 0 ] ||
    drill_fail "migrations table $mig is empty in the restore"

  # Plausibility against the live database: a table with many rows now must not be empty
  # in the backup (catches schema-only or truncated dumps). Skipped if the live DB is absent.
  local live problems=""
  if live=$(live_estimates 2>/dev/null); then
    while IFS=$'\t' read -r name n; do
      if [ -z "$name" ] || [ -z "${restored[$name]+x}" ]; then continue; fi
      if [ "$n" -ge "$DRILL_MIN_ROWS" ] && [ "${restored[$name]}" -eq 0 ]; then
        problems+=" $name (about $n rows live, 0 restored)"
      fi
    done <<<"$live"
  else
    err "warning: live database $BACKUP_DB_NAME not reachable; row counts not compared with it"
  fi
  [ -z "$problems" ] || drill_fail "implausible row counts:$problems"

  log "restored tables and row counts:"
  sed -e 's/^/  /' -e 's/\t/: /' <<<"$counts"
  printf 'snapshot=%s\nsnapshot_time=%s\nfinished=%s\nrestore_seconds=%s\ntables=%s\nrows=%s\n' \
    "$snap" "$snap_time" "$(date -u +%FT%TZ)" "$secs" "$tables" "$rows" | write_state last-drill
  printf '%s snapshot=%s restore_seconds=%s tables=%s rows=%s\n' \
    "$(date -u +%FT%TZ)" "${snap:0:8}" "$secs" "$tables" "$rows" >>"$STATE_DIR/drill-history.log"
  log "restore drill OK: backup ${snap:0:8} restored in ${secs}s; $tables tables, $rows rows, migrations table $mig present"
}

main() {
  local cmd=${1:-}
  [ $# -eq 0 ] || shift
  case "$cmd" in
    now) cmd_now "$@" ;;
    list) cmd_list "$@" ;;
    restore) cmd_restore "$@" ;;
    restore-app) cmd_restore_app "$@" ;;
    tables) cmd_tables "$@" ;;
    drill) cmd_drill "$@" ;;
    -h | --help | help) help_text ;;
    *) usage ;;
  esac
}

main "$@"

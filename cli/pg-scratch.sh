#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks: real Debian PostgreSQL,
# its own data dir, socket and port, so tests never depend on (or touch) a system cluster.
#   pg-scratch.sh start DIR [PORT]  -> prints a DATABASE_URL for superuser "postgres" on 127.0.0.1
#   pg-scratch.sh replica DIR PRIMARY_PORT [PORT]
#                                   -> a streaming hot standby of the scratch cluster on PRIMARY_PORT
#                                      (pg_basebackup -R over 127.0.0.1, through a slot named
#                                      scratch_replica_<PORT>); prints its DATABASE_URL
#   pg-scratch.sh stop DIR          -> stops it (fast mode) and removes DIR
# PostgreSQL refuses to run as root, so as root the cluster runs as the "postgres" user.
set -euo pipefail

cmd=${1:?usage: pg-scratch.sh start|replica|stop DIR [PORT]}
dir=${2:?usage: pg-scratch.sh start|replica|stop DIR [PORT]}

# The newest installed major version (a glob, so no ls; sort -V orders 9 before 15).
bindir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
[ -x "$bindir/initdb" ] || { echo "pg-scratch: PostgreSQL server binaries not found; run: npm run setup" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

case "$cmd" in
  start)
    port=${3:-$(free_port)}
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
    as_pg "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  replica)
    primary_port=${3:?usage: pg-scratch.sh replica DIR PRIMARY_PORT [PORT]}
    port=${4:-$(free_port)}
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
    # initdb's pg_hba lets local replication connections in (trust), as it does everything else.
    # Through a slot of its own (made here, left on the primary): a replica stopped for a while
    # catches up when started again, whatever the primary wrote meanwhile.
    as_pg "$bindir/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$dir/data" -R -X stream --checkpoint=fast \
      --create-slot --slot="scratch_replica_$port" >"$dir/clone.log" 2>&1 \
      || { cat "$dir/clone.log" >&2; exit 1; }
    # In the standby's own settings (not pg_ctl -o), so a plain `pg_ctl start` brings it back the same.
    printf '%s\n' "port = $port" "unix_socket_directories = '$dir'" "listen_addresses = '127.0.0.1'" \
      "fsync = off" "full_page_writes = off" "hot_standby = on" | as_pg tee -a "$dir/data/postgresql.auto.conf" >/dev/null
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *) echo "pg-scratch: unknown command: $cmd (use start or stop)" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Smoke-tests a built release tarball the way a server runs it: unpack, bin/migrate (twice:
# idempotent), bin/web and bin/worker against a scratch PostgreSQL, check /health and the
# X-App-Release header, then SIGTERM both and expect exit 0.
#   scripts/smoke-release.sh [dist/release/saas-app-<id>.tar.gz]   (default: the newest one)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
newest_artifact() {
  local newest="" f
  for f in "$here"/../dist/release/saas-app-*.tar.gz; do
    [[ -f $f && ( -z $newest || $f -nt $newest ) ]] && newest=$f
  done
  [[ -n $newest ]] || { echo "smoke: no dist/release/saas-app-*.tar.gz; run npm run build first" >&2; exit 1; }
  printf '%s\n' "$newest"
}
tarball=${1:-$(newest_artifact)}
work=$(mktemp -d /tmp/saas-app-smoke-XXXXXX)
chmod 755 "$work" # the scratch cluster runs as the postgres user
pg="$work/pg"
cleanup() {
  if [ -n "${web_pid:-}" ]; then kill "$web_pid" 2>/dev/null || true; fi
  if [ -n "${worker_pid:-}" ]; then kill "$worker_pid" 2>/dev/null || true; fi
  bash "$here/../../cli/pg-scratch.sh" stop "$pg" || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/release"
tar -xzf "$tarball" -C "$work/release"
id=$(node -p 'require(process.argv[1]).id' "$work/release/manifest.json")
echo "smoke: release $id from $tarball"

DATABASE_URL=$(bash "$here/../../cli/pg-scratch.sh" start "$pg")
export DATABASE_URL
export SECRET_KEY=smoke-test-secret-key-0123456789abcdef APP_URL=http://smoke.example.test UPLOAD_DIR="$work/uploads"
PORT=$(node -e 's=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
export PORT

cd /  # the wrappers must not depend on the working directory
"$work/release/bin/migrate"
"$work/release/bin/migrate"

"$work/release/bin/web" >"$work/web.log" 2>&1 & web_pid=$!
"$work/release/bin/worker" >"$work/worker.log" 2>&1 & worker_pid=$!
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.2; done

headers=$(curl -sS -D - -o "$work/health.json" "http://127.0.0.1:$PORT/health")
grep -qi "^x-app-release: $id" <<<"$headers" || { echo "smoke: X-App-Release is not $id:"; echo "$headers"; exit 1; }
[ "$(cat "$work/health.json")" = '{"status":"ok"}' ] || { echo "smoke: /health body: $(cat "$work/health.json")"; exit 1; }
echo "smoke: /health ok, X-App-Release: $id"

code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
  -d '{"email":"smoke@example.test","password":"long enough pw","name":"smoke"}' "http://127.0.0.1:$PORT/auth/register")
[ "$code" = 202 ] || { echo "smoke: register answered $code"; cat "$work/web.log"; exit 1; }
for _ in $(seq 1 50); do grep -q '"message":"job done"' "$work/worker.log" && break; sleep 0.2; done
grep -q '"message":"job done"' "$work/worker.log" || { echo "smoke: worker did not run the welcome job"; cat "$work/worker.log"; exit 1; }
echo "smoke: signup -> welcome job done by the worker (email logged: no SMTP_URL)"

kill -TERM "$web_pid" "$worker_pid"
web_rc=0; wait "$web_pid" || web_rc=$?
worker_rc=0; wait "$worker_pid" || worker_rc=$?
web_pid="" worker_pid=""
if [ "$web_rc" != 0 ] || [ "$worker_rc" != 0 ]; then echo "smoke: exit codes web=$web_rc worker=$worker_rc"; exit 1; fi
echo "smoke: SIGTERM -> web and worker exited 0"
echo "smoke: OK"

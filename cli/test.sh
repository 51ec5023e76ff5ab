#!/usr/bin/env bash
# `npm test`: the whole suite in four parts, each run even when one before it failed, so one run
# shows every failure; exits non-zero if any part failed.
#   1. type-check;
#   2. every suite but the VM ones, three files at a time (they wait on real services more than
#      on the CPU: PostgreSQL, restic and S3, nginx under load);
#   3. the VM suites, one after another (each boots Debian 13 VMs that use both cores);
#   4. the app's own suite (app/).
set -uo pipefail
cd "$(dirname "$0")/.." || exit

failed=()
part() {
  local name=$1
  shift
  echo "== npm test: $name"
  "$@" || failed+=("$name")
}
part "type-check" npm run -s typecheck
part "suites without VMs" npx mocha 'test/**/*.test.ts' --grep @vm --invert --parallel --jobs 3
part "VM suites" npx mocha 'test/**/*.test.ts' --grep @vm
part "app suite" npm test --prefix app
if [ ${#failed[@]} -gt 0 ]; then
  echo "npm test: failed: ${failed[*]}" >&2
  exit 1
fi

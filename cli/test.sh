#!/usr/bin/env bash
# `npm test`: the whole suite in four parts, each run even when one before it failed, so one run
# shows every failure; exits non-zero if any part failed.
#   1. type-check;
#   2. every suite but the VM ones, three files at a time (they wait on real services more than
#      on the CPU: PostgreSQL, restic and S3, nginx under load);
#   3. the VM suites (vm_suites below);
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

# The VM suites, by the title of their top describe. A VM alone leaves the 2 cores half idle
# (the three-server e2e boots three VMs in 1.6 times the time one takes), so the move rehearsal's
# two VMs run beside the one-VM suites; the three-server e2e runs alone afterwards. The move's
# output is held back and printed whole once it ends, so the log reads one suite at a time.
vm_suites() {
  local status=0 move_log move_pid
  move_log=$(mktemp)
  npx mocha 'test/**/*.test.ts' --grep '^@vm move ' >"$move_log" 2>&1 &
  move_pid=$!
  npx mocha 'test/**/*.test.ts' --grep '^@vm (?!move |separated)' || status=1
  wait "$move_pid" || status=1
  cat "$move_log"
  rm -f "$move_log"
  npx mocha 'test/**/*.test.ts' --grep '^@vm separated' || status=1
  return "$status"
}

part "type-check" npm run -s typecheck
part "suites without VMs" npx mocha 'test/**/*.test.ts' --grep @vm --invert --parallel --jobs 3
part "VM suites" vm_suites
part "app suite" npm test --prefix app
if [ ${#failed[@]} -gt 0 ]; then
  echo "npm test: failed: ${failed[*]}" >&2
  exit 1
fi

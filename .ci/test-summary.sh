#!/usr/bin/env bash
# Usage: test-summary.sh LOG STATUS
# Prints "tests: N passed, N failed, N skipped" summed over every mocha summary in LOG (the
# output of `npm test`), then exits with STATUS, the exit status of that `npm test`.
set -euo pipefail
log=$1
status=$2

# awk alone, not grep | awk: under pipefail a grep that finds no "failing" line (the good case)
# exits 1 and would abort this script before the summary (CI went red on exactly that).
# Only whole mocha summary lines count ("  161 passing (16m)", "  1 pending"), not a failure
# message that happens to contain "2 failing".
count() {
  awk -v word="$1" '$0 ~ "^ +[0-9]+ " word "( \\([^)]*\\))?$" {s += $1} END {print s + 0}' "$log"
}
passed=$(count passing)
failed=$(count failing)
pending=$(count pending)
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # a crash before mocha's summary still fails
fi
echo "tests: $passed passed, $failed failed, $pending skipped"
exit "$status"

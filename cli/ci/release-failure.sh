#!/usr/bin/env bash
# usage: release-failure.sh <stack> <pulumi-up.log>
# After a failed `pulumi up`: the release tool's own words (`release: FAILED: <reason>`, what it
# rolled back to, `release restart: FAILED: ...`; provisioning/assets/release/release) as GitHub
# error annotations and, in Markdown on stdout, for the run summary. pulumi prints the remote
# command's stderr as log lines and again inside its error (quoted, newlines as \n), so each
# sentence is cut at a quote or backslash and printed once. Without a release line, pulumi's own
# error lines are the reason.
set -euo pipefail
(( $# == 2 )) || { echo "usage: release-failure.sh <stack> <pulumi-up.log>" >&2; exit 2; }
stack=$1
log=$2

mapfile -t reasons < <(grep -aoE 'release( restart)?: (FAILED|rolled back|this was the first release|ROLLBACK FAILED|stopped|restarted on|not restarted|a configuration change)[^"\\]*' "$log" \
  | sed -E 's/[[:space:]]+$//' | awk '!seen[$0]++')
if (( ${#reasons[@]} == 0 )); then
  mapfile -t reasons < <(grep -aoE 'error: .*' "$log" | sed -E 's/[[:space:]]+$//' | awk '!seen[$0]++' | tail -n 5)
  title="pulumi up failed on $stack"
else
  title="Release failed on $stack"
fi
(( ${#reasons[@]} > 0 )) || reasons=("pulumi up failed without an error line; see the job log")

for line in "${reasons[@]}"; do
  echo "::error title=$title::$line" >&2
done
echo "### $stack: deploy failed"
echo
for line in "${reasons[@]}"; do
  echo "- \`$line\`"
done

#!/usr/bin/env bash
# usage: rollback.sh <targets.json> [<release id>]
# Runs the release tool's `sudo release rollback [<id>]` over SSH on every server of
# <targets.json> (the stack output releaseSshTargets: {"<server>": "admin@<ip>"}), one after
# another, stopping at the first that fails. A rollback never migrates, so the order does not
# matter to the schema. Prints Markdown for the run summary; the SSH key comes from the agent.
set -euo pipefail
(( $# >= 1 && $# <= 2 )) || { echo "usage: rollback.sh <targets.json> [<release id>]" >&2; exit 2; }
targets=$1
id=${2:-}
# The id is handed to a remote shell: only the release tool's own format passes.
if [[ -n $id && ! $id =~ ^[0-9a-f]{16}$ ]]; then
  echo "::error title=Bad release id::\"$id\" is not a release id (16 lowercase hex digits; see: release status)" >&2
  exit 2
fi
mapfile -t servers < <(jq -r 'to_entries[] | "\(.key)\t\(.value)"' "$targets")
if (( ${#servers[@]} == 0 )); then
  echo "::error title=Nothing to roll back::$targets names no server; has this stack been deployed?" >&2
  exit 2
fi

# The runner has never seen these servers: their host keys are taken on first sight.
ssh_options=(-o BatchMode=yes -o StrictHostKeyChecking=accept-new -o ConnectTimeout=20)
for entry in "${servers[@]}"; do
  name=${entry%%$'\t'*}
  target=${entry#*$'\t'}
  echo "### $name ($target): release rollback ${id:-to the previous release}"
  echo
  echo '```'
  status=0
  ssh "${ssh_options[@]}" "$target" sudo release rollback ${id:+"$id"} 2>&1 || status=$?
  echo '```'
  if (( status != 0 )); then
    echo "::error title=Rollback failed on $name::release rollback exited $status on $target (1: rolled back to where it was; 2: refused, e.g. no such release; 3: the site may be degraded, run release status there)" >&2
    exit 1
  fi
done

#!/usr/bin/env bash
# usage: migration-review.sh <base commit> <comment.md>
# For a pull request, run in its checkout: the migrations it adds (git diff against the base),
# each reviewed by `lint:migrations`, written as the Markdown of its PR comment. Exit 1 when a
# migration it adds has findings. A change to a migration that already exists is named too: where
# it already ran, it will not run again.
set -euo pipefail
(( $# == 2 )) || { echo "usage: migration-review.sh <base commit> <comment.md>" >&2; exit 2; }
base=$1
out=$2
here=$(cd "$(dirname "$0")/../.." && pwd)
pattern='app/migrations/*.sql'

mapfile -t added < <(git diff --name-only --diff-filter=A "$base" HEAD -- "$pattern")
mapfile -t changed < <(git diff --name-only --diff-filter=MRD "$base" HEAD -- "$pattern")

status=0
report=""
if (( ${#added[@]} > 0 )); then
  report=$(INIT_CWD=$PWD "$here/node_modules/.bin/tsx" "$here/cli/lintMigrations.ts" "${added[@]}" 2>&1) || status=$?
fi

{
  echo "<!-- saas-vps:migration-review -->"
  echo "### Migration review"
  echo
  if (( ${#added[@]} == 0 )); then
    echo "This pull request adds no migration (\`$pattern\`)."
  else
    echo "Migrations this pull request adds:"
    echo
    for file in "${added[@]}"; do echo "- \`$file\`"; done
    echo
    if (( status == 0 )); then echo "**lint:migrations: no findings.**"; else echo "**lint:migrations: findings (exit $status).** Each must become safe for the release still serving, or carry a reasoned \`-- lint:allow <rule> because <reason>\` (README: Migrations that survive a rolling release)."; fi
    echo
    echo '```'
    echo "$report"
    echo '```'
  fi
  if (( ${#changed[@]} > 0 )); then
    echo
    echo "**Existing migrations changed** (where they already ran they will not run again; add a new migration instead):"
    echo
    for file in "${changed[@]}"; do echo "- \`$file\`"; done
  fi
} >"$out"
exit "$status"

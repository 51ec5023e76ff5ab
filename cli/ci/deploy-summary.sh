#!/usr/bin/env bash
# usage: deploy-summary.sh <stack> <outputs.json>
# Markdown for the deploy run's summary ($GITHUB_STEP_SUMMARY): the release id and the stack
# outputs that matter after a deploy, from `pulumi stack output --json`. Only the keys listed
# here are shown; without --show-secrets pulumi prints a secret output as "[secret]" anyway.
set -euo pipefail
(( $# == 2 )) || { echo "usage: deploy-summary.sh <stack> <outputs.json>" >&2; exit 2; }
stack=$1
outputs=$2
jq -r --arg stack "$stack" '
  def cell: (if type == "string" then . else tojson end) | "`" + gsub("\\|"; "\\|") + "`";
  "### \($stack): release \(.releaseId // "none")",
  "",
  "| output | value |",
  "|---|---|",
  (["releaseId", "url", "releaseSshTargets", "ipv4", "ipv6", "stage", "provider", "backupRepository", "uploadsBucket"][] as $key
    | select(has($key) and .[$key] != null)
    | "| \($key) | \(.[$key] | cell) |")
' "$outputs"

#!/usr/bin/env bash
# backup-alert UNIT: the OnFailure= notifier of backup.service and restore-drill.service
# (saas-vps, issue 6). Installed as /usr/local/lib/saas-vps/backup-alert and run by
# backup-alert@<unit>.service. It logs an error line to the journal and POSTs a JSON alert
# to BACKUP_ALERT_WEBHOOK_URL from the env file. The payload has a "text" field, so Slack,
# Mattermost and most chat "incoming webhooks" display it as is:
#   {"text": "...", "event": "backup_failure", "unit": "...", "host": "...", "time": "...", "log": "..."}
# Overridable from the environment (the tests run this very file): BACKUP_ENV_FILE.
set -euo pipefail
umask 077
cd /

PROG=backup-alert
ENV_FILE=${BACKUP_ENV_FILE:-/etc/saas-vps/backup.env}

# "<3>" = priority "err" when stderr is the journal (see backup.sh).
ERR_PREFIX=
if [ -n "${JOURNAL_STREAM:-}" ] && [ "$(stat -L -c '%d:%i' "/proc/$$/fd/2" 2>/dev/null)" = "$JOURNAL_STREAM" ]; then
  ERR_PREFIX='<3>'
fi
err() { printf '%s%s: %s\n' "$ERR_PREFIX" "$PROG" "$*" >&2; }

# A JSON string literal (RFC 8259 section 7) for arbitrary text.
json() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  s=$(printf '%s' "$s" | tr -d '\000-\037')
  printf '"%s"' "$s"
}

# curl with the URL in a config read from a pipe: webhook URLs carry tokens.
curl_url() {
  local url=$1
  shift
  url=${url//\\/\\\\}
  curl -K <(printf 'url = "%s"\n' "${url//\"/\\\"}") "$@"
}

unit=${1:?usage: backup-alert UNIT}
host=$(hostname -f 2>/dev/null || hostname)
now=$(date -u +%FT%TZ)
text="ALERT: $unit failed on $host at $now; backups or their restore test need attention"
err "$text"

webhook=
if [ -r "$ENV_FILE" ]; then
  # shellcheck source=/dev/null
  webhook=$(. "$ENV_FILE" && printf '%s' "${BACKUP_ALERT_WEBHOOK_URL:-}")
else
  err "cannot read $ENV_FILE: no webhook alert sent"
  exit 1
fi
if [ -z "$webhook" ]; then
  err "no alert webhook configured: this journal line is the only alert"
  exit 0
fi

# The failed unit's last lines, if the journal is there (best effort).
logs=$(journalctl --unit "$unit" --lines 20 --output cat --no-pager 2>/dev/null || true)

body=$(printf '{"text":%s,"event":"backup_failure","unit":%s,"host":%s,"time":%s,"log":%s}' \
  "$(json "$text")" "$(json "$unit")" "$(json "$host")" "$(json "$now")" "$(json "$logs")")
if ! printf '%s' "$body" | curl_url "$webhook" -fsS -m 20 --retry 3 --retry-all-errors \
  -H 'Content-Type: application/json' --data-binary @- -o /dev/null; then
  err "could not deliver the alert to the webhook"
  exit 1
fi

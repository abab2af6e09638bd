#!/usr/bin/env bash
# At-most-once delivery with a REST Proxy v2 consumer: COMMIT, THEN PROCESS.
#
# A mailer reads notification e-mails from a topic. For each batch it first commits the offsets
# (auto-commit off), then sends the e-mails.
#
# Killed at the worst moment -- after the commit and before the batch is fully processed -- the
# rest of that batch is lost for the group: the restarted mailer resumes after the committed
# offsets and never sees those records again. No record is ever processed twice. At-most-once
# suits data whose loss is cheaper than a duplicate (metrics samples, "you have mail" pings).
# A kill before the commit loses nothing (the batch is handed out again).
#
# Usage: DLOG_URL=http://127.0.0.1:8082 examples/at-most-once.sh   (needs bash, curl, python3)
# shellcheck source=examples/_common.sh
. "$(dirname "$0")/_common.sh"
require_dlog

TOPIC="notifications-$RUN_ID"
GROUP="mailer-$RUN_ID"
OUTBOX=$(mktemp)   # the e-mails really sent, one line each
trap 'rm -f "$OUTBOX"' EXIT

# mailer [CRASH_AFTER]: commit each batch, then send its e-mails; with CRASH_AFTER it is killed
# right after sending that e-mail, with the rest of its (already committed) batch unsent.
mailer() {
    local crash_after=${1:-} batch last offset value
    consumer_start "$GROUP" mailer "$TOPIC"
    while batch=$(poll "$GROUP" mailer) && [ "$batch" != "[]" ]; do
        last=$(printf '%s' "$batch" | json 'd[-1]["offset"]')
        commit "$GROUP" mailer "$TOPIC" 0 "$last"
        echo "   committed through offset $last, before sending"
        while IFS=$'\t' read -r _ offset value; do
            echo "$value" >>"$OUTBOX"
            echo "   sent $value (offset $offset)"
            [ "$value" = "$crash_after" ] && crash "after sending $value, with the rest of the batch unsent"
        done <<<"$(printf '%s' "$batch" | records_tsv)"
    done
    consumer_stop "$GROUP" mailer
}

echo "== at-most-once: topic $TOPIC, group $GROUP"
create_topic "$TOPIC" 1

echo "-- 1. three e-mails; the mailer commits, then sends them"
produce_values "$TOPIC" email-1 email-2 email-3
(mailer)

echo "-- 2. three more; the mailer commits, sends email-4 and is killed"
produce_values "$TOPIC" email-4 email-5 email-6
if (mailer email-4); then echo "!! the mailer was supposed to crash" >&2; exit 1; fi

echo "-- 3. the mailer restarts after one more e-mail arrived: it resumes after the committed offset"
produce_values "$TOPIC" email-7
(mailer)

"$PYTHON" - "$OUTBOX" <<'EOF'
import collections, sys
sent = [line.strip() for line in open(sys.argv[1]) if line.strip()]
counts = collections.Counter(sent)
emails = [f"email-{i}" for i in range(1, 8)]
lost = [e for e in emails if counts[e] == 0]
twice = [e for e in emails if counts[e] > 1]
print(f"RESULT at-most-once: {len(emails)} e-mails, {len(sent)} sent, "
      f"lost: {' '.join(lost) or 'none'}, sent twice: {' '.join(twice) or 'none'}")
# The guarantee: nothing twice; the loss is exactly the committed-but-unprocessed rest of the batch.
sys.exit(0 if not twice and lost == ["email-5", "email-6"] else 1)
EOF

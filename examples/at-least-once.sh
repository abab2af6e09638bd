#!/usr/bin/env bash
# At-least-once delivery with a REST Proxy v2 consumer: PROCESS, THEN COMMIT.
#
# A payment service reads payments from a topic, charges each one, and only then commits the
# offsets of what it charged (auto-commit off).
#
# Killed at the worst moment -- after charging and before committing -- nothing is lost: the
# restarted worker resumes at the last committed offset and is handed exactly the payments it
# charged but had not committed, so those are charged a second time. At-least-once means no
# loss, possible duplicates; real payment services make the charge idempotent (keyed by the
# payment id) so a replay is harmless. A kill at any other moment replays less or nothing.
#
# Usage: DLOG_URL=http://127.0.0.1:8082 examples/at-least-once.sh   (needs bash, curl, python3)
# shellcheck source=examples/_common.sh
. "$(dirname "$0")/_common.sh"
require_dlog

TOPIC="payments-$RUN_ID"
GROUP="payment-service-$RUN_ID"
LEDGER=$(mktemp)   # the "bank": one line per charge
trap 'rm -f "$LEDGER"' EXIT

# payment_worker [CRASH_AFTER]: charge every payment it is given, committing after each batch;
# with CRASH_AFTER it is killed right after charging that payment, before the commit.
payment_worker() {
    local crash_after=${1:-} batch partition offset value last_partition last_offset
    consumer_start "$GROUP" payment-worker "$TOPIC"
    while batch=$(poll "$GROUP" payment-worker) && [ "$batch" != "[]" ]; do
        while IFS=$'\t' read -r partition offset value; do
            echo "$value" >>"$LEDGER"
            echo "   charged $value (offset $offset)"
            last_partition=$partition last_offset=$offset
            [ "$value" = "$crash_after" ] && crash "after charging $value, before committing"
        done <<<"$(printf '%s' "$batch" | records_tsv)"
        commit "$GROUP" payment-worker "$TOPIC" "$last_partition" "$last_offset"
        echo "   committed: processed through offset $last_offset"
    done
    consumer_stop "$GROUP" payment-worker
}

echo "== at-least-once: topic $TOPIC, group $GROUP"
create_topic "$TOPIC" 1

echo "-- 1. three payments; the worker charges and commits them"
produce_values "$TOPIC" pay-1 pay-2 pay-3
(payment_worker)

echo "-- 2. three more payments; the worker is killed after charging pay-5, before committing"
produce_values "$TOPIC" pay-4 pay-5 pay-6
if (payment_worker pay-5); then echo "!! the worker was supposed to crash" >&2; exit 1; fi

echo "-- 3. the worker restarts: it resumes at the committed offset"
(payment_worker)

"$PYTHON" - "$LEDGER" <<'EOF'
import collections, sys
charges = [line.strip() for line in open(sys.argv[1]) if line.strip()]
counts = collections.Counter(charges)
payments = [f"pay-{i}" for i in range(1, 7)]
lost = [p for p in payments if counts[p] == 0]
twice = [p for p in payments if counts[p] > 1]
print(f"RESULT at-least-once: {len(payments)} payments, {len(charges)} charges, "
      f"lost: {' '.join(lost) or 'none'}, charged twice: {' '.join(twice) or 'none'}")
# The guarantee: nothing lost; the replay is exactly the uncommitted range (pay-4, pay-5).
sys.exit(0 if not lost and twice == ["pay-4", "pay-5"] else 1)
EOF

#!/usr/bin/env bash
# Exactly-once consume-transform-produce: the outputs AND the consumer's offsets in ONE
# transaction, read with isolation.level=read_committed (kafka-semantics 4.20).
#
# A receipt service reads payments (a read_committed v2 consumer instance, auto-commit off),
# writes one receipt per payment with a transactional producer, adds the consumer offsets to
# the same transaction (with the instance's generation_id and member_id, so a fenced member
# cannot commit), and commits. Outputs and offsets become visible together, or not at all.
#
# Killed at the worst moment -- receipts written and offsets sent, transaction not yet
# committed -- nothing is lost and nothing is doubled: the open transaction is aborted when the
# restarted worker calls InitProducerId with the same transactional id (which also fences the
# old epoch, should the "dead" worker still be alive), or after transaction.timeout.ms; its
# receipts are never shown to read_committed readers, its offsets never committed; the restarted
# worker resumes at the committed offsets and writes those receipts once. Until the abort,
# read_committed readers of the receipts wait at the open transaction (the last stable offset).
# Killed after the commit was decided, the commit completes anyway (recovery finishes it).
# read_uncommitted readers do see the receipts of aborted attempts: exactly-once is a promise
# to read_committed readers only.
#
# Usage: DLOG_URL=http://127.0.0.1:8082 examples/exactly-once.sh   (needs bash, curl, python3)
# shellcheck source=examples/_common.sh
. "$(dirname "$0")/_common.sh"
require_dlog

IN="card-payments-$RUN_ID"
OUT="receipts-$RUN_ID"
GROUP="receipt-service-$RUN_ID"
TID="receipt-service-$RUN_ID"   # the transactional id: the same for every life of the worker

# receipt_worker [CRASH_AFTER]: one life of the worker; with CRASH_AFTER it is killed once the
# batch holding that payment has its receipts written and offsets sent, before the commit.
receipt_worker() {
    local crash_after=${1:-} producer pid epoch batch assignment body last reports
    # InitProducerId: a new epoch for this life; it aborts what the previous life left open.
    producer=$(call POST "/v3/clusters/$CID/producers" "{\"transactional_id\": \"$TID\"}")
    pid=$(printf '%s' "$producer" | json 'd["producer_id"]')
    epoch=$(printf '%s' "$producer" | json 'd["producer_epoch"]')
    echo "   producer $pid, epoch $epoch"
    consumer_start "$GROUP" receipt-worker "$IN" '"isolation.level": "read_committed"'
    while batch=$(poll "$GROUP" receipt-worker) && [ "$batch" != "[]" ]; do
        assignment=$(call GET "/consumers/$GROUP/instances/receipt-worker/assignments")
        # One receipt per payment, transactional records with consecutive sequences from 0
        # (every transaction gets a new epoch, whose sequences start again at 0).
        body=$(printf '%s' "$batch" | "$PYTHON" -c 'import json, sys
pid, epoch, tid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for seq, r in enumerate(json.load(sys.stdin)):
    print(json.dumps({"partition_id": 0, "value": {"type": "JSON", "data": "receipt-for-" + r["value"]},
                      "producer_id": pid, "producer_epoch": epoch, "sequence": seq, "transactional_id": tid}))
' "$pid" "$epoch" "$TID")
        reports=$(call POST "/v3/clusters/$CID/topics/$OUT/records" "$body")
        printf '%s' "$reports" | "$PYTHON" -c 'import json, sys
bad = [r for r in map(json.loads, filter(str.strip, sys.stdin.read().splitlines())) if r.get("error_code") != 200]
sys.exit(1 if bad else 0)' || { echo "!! produce failed: $reports" >&2; return 1; }
        echo "   wrote receipts for $(printf '%s' "$batch" | json '" ".join(r["value"] for r in d)') (in the transaction)"
        last=$(printf '%s' "$batch" | json 'd[-1]["offset"]')
        call POST "/v3/clusters/$CID/transactions/$TID/offsets" "{\"producer_id\": $pid, \"producer_epoch\": $epoch,
            \"consumer_group_id\": \"$GROUP\", \"offsets\": [{\"topic_name\": \"$IN\", \"partition_id\": 0,
            \"offset\": $((last + 1))}], \"generation_id\": $(printf '%s' "$assignment" | json 'd["generation_id"]'),
            \"member_id\": \"$(printf '%s' "$assignment" | json 'd["member_id"]')\"}" >/dev/null
        echo "   sent offset $((last + 1)) of $GROUP (in the transaction)"
        if [ -n "$crash_after" ] && printf '%s' "$batch" | records_tsv | cut -f3 | grep -qx "$crash_after"; then
            crash "after writing receipts and sending offsets, before committing"
        fi
        epoch=$(call POST "/v3/clusters/$CID/transactions/$TID:commit" \
            "{\"producer_id\": $pid, \"producer_epoch\": $epoch}" | json 'd["producer_epoch"]')
        echo "   committed: receipts and offset together (next epoch $epoch)"
    done
    consumer_stop "$GROUP" receipt-worker
}

echo "== exactly-once: $IN -> $OUT, group $GROUP, transactional id $TID"
create_topic "$IN" 1
create_topic "$OUT" 1

echo "-- 1. three payments; the worker writes their receipts and commits"
produce_values "$IN" pay-1 pay-2 pay-3
(receipt_worker)

echo "-- 2. three more; the worker is killed before committing their transaction"
produce_values "$IN" pay-4 pay-5 pay-6
if (receipt_worker pay-6); then echo "!! the worker was supposed to crash" >&2; exit 1; fi

echo "-- 3. the worker restarts: InitProducerId aborts the open transaction; it resumes at the committed offset"
(receipt_worker)

echo "-- 4. what readers of $OUT see"
committed=$(read_all "$OUT" read_committed)
uncommitted=$(read_all "$OUT" read_uncommitted)
lag=$(call GET "/v3/clusters/$CID/consumer-groups/$GROUP/lag-summary" | json 'd["total_lag"]')
echo "   read_committed:   ${committed//$'\n'/ }"
echo "   read_uncommitted: ${uncommitted//$'\n'/ }"
echo "   lag of $GROUP: $lag"

"$PYTHON" - "$committed" "$uncommitted" "$lag" <<'EOF'
import collections, sys
committed, uncommitted = sys.argv[1].split(), sys.argv[2].split()
lag = int(sys.argv[3])
wanted = [f"receipt-for-pay-{i}" for i in range(1, 7)]
counts = collections.Counter(committed)
lost = [r for r in wanted if counts[r] == 0]
dup = [r for r in wanted if counts[r] > 1]
aborted = len(uncommitted) - len(committed)
print(f"RESULT exactly-once: 6 payments, {len(committed)} receipts for read_committed readers, "
      f"lost: {' '.join(lost) or 'none'}, duplicates: {' '.join(dup) or 'none'}, "
      f"aborted receipts seen only by read_uncommitted: {aborted}, lag: {lag}")
sys.exit(0 if committed == wanted and aborted == 3 and lag == 0 else 1)
EOF

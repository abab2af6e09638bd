# shellcheck shell=bash
# Helpers shared by the delivery-guarantee examples; sourced by them, not run.
# Needs bash, curl and python3 (for JSON). Talks to $DLOG_URL (default http://127.0.0.1:8082).
set -euo pipefail

DLOG_URL="${DLOG_URL:-http://127.0.0.1:8082}"
DLOG_URL="${DLOG_URL%/}"
RUN_ID="${RUN_ID:-$(date +%s)-$$}"   # topic and group names are unique per run: re-running is safe
V2=application/vnd.kafka.v2+json             # control bodies of the v2 consumer API
V2_JSON=application/vnd.kafka.json.v2+json   # embedded json records (produce and consume)
POLL_TIMEOUT_MS="${POLL_TIMEOUT_MS:-500}"
# The interpreter itself, resolved once: version-manager shims (pyenv) are slow to start.
PYTHON=$(python3 -c 'import sys; print(sys.executable)')

# call METHOD PATH [BODY] [CONTENT_TYPE] [ACCEPT]: prints the response body. An HTTP status of
# 400 or more prints the error to stderr and fails, unless it is listed in $ALLOW
# (for example `ALLOW=404 call DELETE ...`).
call() {
    local method=$1 path=$2 body=${3:-} ctype=${4:-application/json} accept=${5:-} out status
    local args=(-sS -X "$method" -w '\n%{http_code}')
    [ -n "$body" ] && args+=(-H "Content-Type: $ctype" --data-binary "$body")
    [ -n "$accept" ] && args+=(-H "Accept: $accept")
    out=$(curl "${args[@]}" "$DLOG_URL$path") || { echo "!! $method $path: no answer from $DLOG_URL" >&2; return 1; }
    status=${out##*$'\n'}
    out=${out%$'\n'*}
    if [ "$status" -ge 400 ] && [[ " ${ALLOW:-} " != *" $status "* ]]; then
        echo "!! $method $path -> HTTP $status: $out" >&2
        return 1
    fi
    printf '%s' "$out"
}

# json EXPR: evaluate a Python expression over the JSON document on stdin (bound to `d`);
# strings print raw, anything else as JSON.
json() {
    "$PYTHON" -c 'import json, sys
d = json.load(sys.stdin)
v = eval(sys.argv[1])
print(v if isinstance(v, str) else json.dumps(v))' "$1"
}

# records_tsv: the records of a poll (JSON array on stdin) as "partition<TAB>offset<TAB>value" lines.
records_tsv() {
    "$PYTHON" -c 'import json, sys
for r in json.load(sys.stdin):
    v = r["value"]
    print(r["partition"], r["offset"], v if isinstance(v, str) else json.dumps(v), sep="\t")'
}

require_dlog() {
    if ! curl -sSf -o /dev/null "$DLOG_URL/health/ready"; then
        echo "dlog is not answering at $DLOG_URL (start it with 'make run', or set DLOG_URL)" >&2
        exit 2
    fi
    CID=$(call GET /v3/clusters | json 'd["data"][0]["cluster_id"]')
}

# create_topic NAME PARTITIONS
create_topic() {
    call POST "/v3/clusters/$CID/topics" \
        "{\"topic_name\": \"$1\", \"partitions_count\": $2, \"replication_factor\": 3}" >/dev/null
}

# produce_values TOPIC VALUE...: one v2 json produce of string values to partition 0.
produce_values() {
    local topic=$1 records
    shift
    records=$("$PYTHON" -c 'import json, sys; print(json.dumps([{"value": v, "partition": 0} for v in sys.argv[1:]]))' "$@")
    call POST "/topics/$topic" "{\"records\": $records}" "$V2_JSON" >/dev/null
}

# consumer_start GROUP NAME TOPIC [EXTRA_CONFIG_JSON]: (re)create instance NAME of GROUP,
# subscribed to TOPIC, auto-commit off. A restarted worker first deletes the instance its
# previous life left behind (else it would wait consumer.instance.timeout.ms for it to expire);
# with auto-commit off, that delete commits nothing.
consumer_start() {
    local group=$1 name=$2 topic=$3 extra=${4:-}
    ALLOW=404 call DELETE "/consumers/$group/instances/$name" >/dev/null
    call POST "/consumers/$group" "{\"name\": \"$name\", \"format\": \"json\", \"auto.offset.reset\": \"earliest\",
        \"auto.commit.enable\": \"false\"${extra:+, $extra}}" "$V2" >/dev/null
    call POST "/consumers/$group/instances/$name/subscription" "{\"topics\": [\"$topic\"]}" "$V2" >/dev/null
}

# poll GROUP NAME: one long poll (up to $POLL_TIMEOUT_MS); prints the records as JSON.
poll() {
    call GET "/consumers/$1/instances/$2/records?timeout=$POLL_TIMEOUT_MS" "" "" "$V2_JSON"
}

# commit GROUP NAME TOPIC PARTITION LAST_OFFSET: commit "processed through LAST_OFFSET"
# (the REST Proxy stores LAST_OFFSET + 1, the next offset to read).
commit() {
    call POST "/consumers/$1/instances/$2/offsets" \
        "{\"offsets\": [{\"topic\": \"$3\", \"partition\": $4, \"offset\": $5}]}" "$V2" >/dev/null
}

consumer_stop() {
    ALLOW=404 call DELETE "/consumers/$1/instances/$2" >/dev/null
}

# read_all TOPIC ISOLATION: every value of partition 0 visible at that isolation level, one a line
# (a throwaway consumer instance in a private group, read from the beginning).
read_all() {
    local topic=$1 isolation=$2 group="reader-$RUN_ID-$2" batch
    consumer_start "$group" reader "$topic" "\"isolation.level\": \"$isolation\""
    while batch=$(poll "$group" reader) && [ "$batch" != "[]" ]; do
        printf '%s' "$batch" | records_tsv | cut -f3
    done
    consumer_stop "$group" reader
}

# crash WHY: the worker process dies here, as kill -9 would kill it (no clean-up, no commit).
crash() {
    echo "   !! worker killed (SIGKILL) $1"
    kill -9 "$BASHPID"
}

#!/usr/bin/env bash
# Checks the outside tools sori's tests rely on, apart from sori's own test suite: that each
# does what the tests take for granted. None of this is sori's behaviour, so none of it is in
# tests/; run it when a tool is installed or upgraded (a new llama.cpp, Redis or Prometheus).
#   promtool      rejects bad exposition text (so tests/it/metrics.rs accepting /metrics means something)
#   redis-server  started as tests/it/support/servers.rs starts it: answers RESP, persists nothing,
#                 refuses connections once killed, and comes back empty on the same port
#   llama-server  the model scripts/llm-server.sh fetches, listed under its alias; a JSON schema
#                 in response_format is enforced (a grammar), even against a prompt asking for prose
# Usage: scripts/check-tools.sh [promtool|redis|llama ...]   (default: all three)
# Needs: promtool, redis-server + redis-cli, curl, python3, and `scripts/llm-server.sh fetch`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

failures=0
say() { printf 'check-tools: %s\n' "$*" >&2; }
pass() { say "ok    $*"; }
fail() {
    say "FAIL  $*"
    failures=$((failures + 1))
}
need() {
    command -v "$1" >/dev/null 2>&1 || {
        say "error: '$1' is required; install it with: $2"
        exit 1
    }
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/sori-check-tools.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$scratch"
}
trap cleanup EXIT

# ------------------------------------------------------------------------------ promtool

check_promtool() {
    need promtool "apt-get install -y prometheus"
    local good='# HELP x_total x
# TYPE x_total counter
x_total 1
'
    local bad='# HELP x_seconds x
# TYPE x_seconds counter
x_seconds 1
'
    local said
    if said=$(printf '%s' "$good" | promtool check metrics 2>&1) && [ -z "$said" ]; then
        pass "promtool accepts a well-formed counter"
    else
        fail "promtool rejects a well-formed counter: $said"
    fi
    if said=$(printf '%s' "$bad" | promtool check metrics 2>&1); then
        fail "promtool accepts a counter not named *_total: $said"
    elif [[ "$said" == *_total* ]]; then
        pass "promtool rejects a counter not named *_total, saying so"
    else
        fail "promtool rejects the counter but does not say why: $said"
    fi
}

# ------------------------------------------------------------------------------ Redis

redis_start() { # PORT: the flags tests/it/support/servers.rs starts redis-server with
    redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
        --dir "$scratch" >"$scratch/redis-$1.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    local i
    for i in $(seq 100); do
        [ "$(redis-cli -p "$1" PING 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    fail "redis-server did not answer PING on port $1 within 10 s: $(tail -n 5 "$scratch/redis-$1.log")"
    return 1
}

check_redis() {
    need redis-server "apt-get install -y redis-server"
    need redis-cli "apt-get install -y redis-tools"
    local port
    port=$(free_port)
    redis_start "$port" || return 0
    local cli=(redis-cli -p "$port")
    if [ "$("${cli[@]}" SET sori:check 소리)" = OK ] && [ "$("${cli[@]}" GET sori:check)" = 소리 ] &&
        [ -z "$("${cli[@]}" GET sori:missing)" ]; then
        pass "redis-server stores and returns UTF-8 values"
    else
        fail "redis-server SET/GET round trip"
    fi
    if [[ "$("${cli[@]}" NOSUCHCOMMAND 2>&1)" == *ERR* ]]; then
        pass "redis-server answers an unknown command with an error"
    else
        fail "redis-server accepted an unknown command"
    fi
    local save
    save=$("${cli[@]}" CONFIG GET save | sed -n 2p)
    if [ -z "$save" ]; then pass "persistence is off"; else fail "persistence is on (save '$save')"; fi

    kill -KILL "$redis_pid"
    wait "$redis_pid" 2>/dev/null || true
    if "${cli[@]}" PING >/dev/null 2>&1; then
        fail "a killed redis-server still answers on port $port"
    elif python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2)' "$port" 2>/dev/null; then
        fail "port $port still accepts connections after the kill"
    else
        pass "a killed redis-server refuses connections"
    fi

    redis_start "$port" || return 0
    if [ -z "$("${cli[@]}" GET sori:check)" ]; then
        pass "restarted on the same port, empty: nothing persisted"
    else
        fail "a value survived the restart"
    fi
    kill -KILL "$redis_pid"
    wait "$redis_pid" 2>/dev/null || true
}

# ------------------------------------------------------------------------------ llama-server

# Parses a chat completion on stdin; with --keywords, exits 0 only when its content is exactly
# {"keywords":[{"text": str, "category": str}, ...]}; prints the content.
completion_content() {
    python3 -c '
import json, sys
completion = json.load(sys.stdin)
content = completion["choices"][0]["message"]["content"]
print(content)
if "--keywords" in sys.argv:
    value = json.loads(content)
    assert isinstance(value, dict) and list(value) == ["keywords"], value
    assert isinstance(value["keywords"], list), value
    for item in value["keywords"]:
        assert isinstance(item, dict) and sorted(item) == ["category", "text"], item
        assert all(isinstance(item[k], str) for k in item), item
' "$@"
}

chat_body() { # PROMPT SENTENCE SCHEMA(0|1)
    python3 -c '
import json, sys
prompt, sentence, schema = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
body = {"model": "qwen2.5-coder-0.5b-instruct", "temperature": 0, "max_tokens": 256,
        "messages": [{"role": "system", "content": prompt}, {"role": "user", "content": sentence}]}
if schema:
    item = {"type": "object", "properties": {"text": {"type": "string"}, "category": {"type": "string"}},
            "required": ["text", "category"], "additionalProperties": False}
    body["response_format"] = {"type": "json_schema", "json_schema": {"name": "keywords", "schema": {
        "type": "object", "properties": {"keywords": {"type": "array", "items": item}},
        "required": ["keywords"], "additionalProperties": False}}}
print(json.dumps(body))
' "$@"
}

check_llama() {
    need curl "apt-get install -y curl"
    local bin="$root/.tools/llama-server/llama-server"
    local model="$root/models/llm/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if [ ! -x "$bin" ] || [ ! -f "$model" ]; then
        say "error: llama-server or its model is missing: run scripts/llm-server.sh fetch"
        exit 1
    fi
    local port
    port=$(free_port)
    OMP_NUM_THREADS=1 "$bin" -m "$model" --host 127.0.0.1 --port "$port" -c 4096 -np 2 -t 2 \
        --no-webui --alias qwen2.5-coder-0.5b-instruct >"$scratch/llama.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    local base="http://127.0.0.1:$port"
    local i
    for i in $(seq 1800); do
        curl -fsS "$base/health" >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! curl -fsS "$base/health" >/dev/null 2>&1; then
        fail "llama-server did not start: $(tail -n 5 "$scratch/llama.log")"
        return 0
    fi
    local id
    id=$(curl -fsS "$base/v1/models" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
    if [ "$id" = qwen2.5-coder-0.5b-instruct ]; then
        pass "llama-server lists its model under the alias"
    else
        fail "llama-server lists '$id', not the alias"
    fi

    local prose="Reply with a short poem about the user's sentence, in plain text. Never use JSON."
    local sentence="내일 오전 9시 서울역 앞에서 교통사고 대책 회의가 열립니다"
    local content
    if content=$(chat_body "$prose" "$sentence" 0 | curl -fsS -m 180 -H 'content-type: application/json' \
        -d @- "$base/v1/chat/completions" | completion_content --keywords 2>/dev/null); then
        fail "without a schema the model still answered keywords JSON (the check below proves nothing): $content"
    else
        pass "without a schema the model follows the prose prompt"
    fi
    if content=$(chat_body "$prose" "$sentence" 1 | curl -fsS -m 180 -H 'content-type: application/json' \
        -d @- "$base/v1/chat/completions" | completion_content --keywords 2>&1); then
        pass "with a JSON schema the answer follows the schema despite the prompt: $(printf '%s' "$content" | tr -s ' \n' ' ')"
    else
        fail "the JSON schema is not enforced: $content"
    fi
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
}

need python3 "apt-get install -y python3"
checks=("$@")
[ ${#checks[@]} -gt 0 ] || checks=(promtool redis llama)
for check in "${checks[@]}"; do
    case "$check" in
    promtool) check_promtool ;;
    redis) check_redis ;;
    llama) check_llama ;;
    *)
        say "unknown check '$check' (promtool, redis, llama)"
        exit 2
        ;;
    esac
done
if [ "$failures" -gt 0 ]; then
    say "$failures check(s) failed"
    exit 1
fi
say "all tools behave as the tests expect"

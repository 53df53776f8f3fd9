#!/usr/bin/env bash
# capture_fixtures.sh: runs each real agent CLI (run_cli.sh) through the recording proxy
# (record_proxy.mjs) in front of a running server and saves every request the CLIs sent as a
# fixture, tests/fixtures/requests/<cli>-<version>-<n>.json, plus INDEX.md describing them.
#
# Usage: capture_fixtures.sh UPSTREAM_URL [OUT_DIR]
#   UPSTREAM_URL  a running server, e.g. llama-server on a random model:
#                   build/kvstash mkmodel --shape tiny -o /tmp/tiny.gguf
#                   ~/.cache/kvstash/llama-*-cpu/bin/llama-server -m /tmp/tiny.gguf --jinja \
#                     -c 32768 --no-webui -np 1 -t 2 --host 127.0.0.1 --port 18080 -n 16
#                 then: capture_fixtures.sh http://127.0.0.1:18080
#   OUT_DIR       default: tests/fixtures/requests (existing fixtures of these CLIs are replaced)
#
# Environment:
#   CAPTURE_RANDOM_MODEL=1  (default) the upstream serves a random Qwen-vocabulary model: the proxy
#                           clamps max tokens to 48 and makes replies end early with a normal stop
#                           (stop_sequences for /v1/messages, a logit bias on <|im_end|> (151645)
#                           for the OpenAI endpoints), else Claude Code fails on stop_reason
#                           max_tokens. Set 0 for a real model: requests are forwarded unchanged.
#   CAPTURE_ONLY="claude codex qwen"  which CLIs to run
#   CAPTURE_WORKROOT=/tmp/kvstash-capture  the runs' WORKDIRs (fixed paths, so that the prompts,
#                           which contain them, are the same from one capture to the next)
#
# Tool calls: a random model never calls a tool, so the "tools" scenarios answer the first two
# model requests with canned tool calls (tool_scripts/*.json, via record_proxy.mjs --script); the
# CLI really runs the tools in its scratch project and sends the results on; later requests go
# to the upstream. Those two replies are marked "response.scripted": true in the fixtures.

set -uo pipefail

[[ $# -ge 1 ]] || { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
UPSTREAM=${1%/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${2:-$REPO/tests/fixtures/requests}
WORKROOT=${CAPTURE_WORKROOT:-/tmp/kvstash-capture}
RANDOM_MODEL=${CAPTURE_RANDOM_MODEL:-1}
ONLY=${CAPTURE_ONLY:-claude codex qwen}

curl -sf -o /dev/null "$UPSTREAM/v1/models" || { echo "capture: no server at $UPSTREAM" >&2; exit 1; }
ver() { node -p "require('$HERE/node_modules/$1/package.json').version"; }
declare -A PREFIX=(
  [claude]="claude-code-$(ver @anthropic-ai/claude-code)"
  [codex]="codex-$(ver @openai/codex)"
  [qwen]="qwen-code-$(ver @qwen-code/qwen-code)"
)
mkdir -p "$OUT" "$WORKROOT"
RAW=$WORKROOT/raw
rm -rf "$RAW"
mkdir -p "$RAW"
for c in $ONLY; do rm -f "$OUT/${PREFIX[$c]}"-*.json; done

LIST="Reply with one short sentence: what is 2+2?"
TOOLS="List the files in this directory, then show me README.md."
PATCH="List the files in this directory, then add a notes.txt file."

# Scenarios: name|cli|workdir|env (space-separated VAR=value)|tool script|prompt
# Run 2 of each "plain" pair reuses run 1's WORKDIR: the same command run twice in one project.
SCENARIOS=(
  "claude-plain-1|claude|claude||-|$LIST"
  "claude-plain-2|claude|claude||-|$LIST"
  "claude-tools|claude|claude-tools||claude|$TOOLS"
  "claude-local-model-name|claude|claude-local|RUN_CLI_MODEL=qwen3-coder|-|$LIST"
  "codex-plain-1|codex|codex||-|$LIST"
  "codex-plain-2|codex|codex||-|$LIST"
  "codex-tools|codex|codex-tools||codex|$TOOLS"
  "codex-gpt-5.5-apply-patch|codex|codex-gpt55|RUN_CLI_MODEL=gpt-5.5|codex-apply-patch|$PATCH"
  "qwen-plain-1|qwen|qwen||-|$LIST"
  "qwen-plain-2|qwen|qwen||-|$LIST"
  "qwen-tools|qwen|qwen-tools||qwen|$TOOLS"
  "qwen-anthropic|qwen|qwen-anthropic|RUN_CLI_QWEN_AUTH_TYPE=anthropic|-|$LIST"
  "qwen-openai-responses|qwen|qwen-responses|RUN_CLI_QWEN_AUTH_TYPE=openai-responses|-|$LIST"
)

# Fresh WORKDIRs for the first run of each.
for s in "${SCENARIOS[@]}"; do
  IFS='|' read -r name cli wd _ _ _ <<<"$s"
  [[ " $ONLY " == *" $cli "* && $name != *-2 ]] && rm -rf "${WORKROOT:?}/$wd"
done

declare -A N=([claude]=0 [codex]=0 [qwen]=0)
INDEX=$WORKROOT/index.tsv
: >"$INDEX"
for s in "${SCENARIOS[@]}"; do
  IFS='|' read -r name cli wd envs script prompt <<<"$s"
  [[ " $ONLY " == *" $cli "* ]] || continue
  rec=$RAW/$name
  # --port 0: the proxy takes a free port and logs it (fixed ports can collide with other servers).
  proxy_args=(--port 0 --upstream "$UPSTREAM" --out "$rec" --log "$rec.proxy.log")
  if [[ $RANDOM_MODEL == 1 ]]; then
    proxy_args+=(--max-tokens 48)
    case "$cli/$envs" in
      claude/*|*anthropic*) proxy_args+=(--inject '{"stop_sequences":[" ","e"]}') ;;
      *) proxy_args+=(--inject '{"logit_bias":{"151645":4}}') ;;
    esac
  fi
  if [[ $script != - ]]; then
    sed "s|@PROJECT@|$WORKROOT/$wd/project|g" "$HERE/tool_scripts/$script.json" >"$rec.script.json"
    proxy_args+=(--script "$rec.script.json")
  fi
  node "$HERE/record_proxy.mjs" "${proxy_args[@]}" &
  proxy_pid=$!
  for _ in $(seq 100); do grep -q listening "$rec.proxy.log" 2>/dev/null && break; sleep 0.1; done
  PORT=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\) .*|\1|p' "$rec.proxy.log" | head -1)
  [[ -n $PORT ]] || { echo "capture: proxy did not start (see $rec.proxy.log)" >&2; kill "$proxy_pid"; exit 1; }

  start=$(date +%s.%N)
  # shellcheck disable=SC2086  # envs is a list of VAR=value words
  env $envs "$HERE/run_cli.sh" "$cli" "http://127.0.0.1:$PORT" "$WORKROOT/$wd" "$prompt" \
    >"$rec.stdout" 2>"$rec.stderr"
  rc=$?
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  sleep 0.5
  kill "$proxy_pid" 2>/dev/null
  wait "$proxy_pid" 2>/dev/null
  reply=$(tr '\n' ' ' <"$rec.stdout" | cut -c1-60)
  printf '%s: rc=%s wall=%.1fs requests=%s reply=%q\n' "$name" "$rc" "$wall" \
    "$(find "$rec" -name "*.json" 2>/dev/null | wc -l)" "$reply"

  # Copy each request into OUT with the scenario's description added under "capture".
  for f in "$rec"/*.json; do
    [[ -e $f ]] || continue
    N[$cli]=$((N[$cli] + 1))
    dest=$OUT/${PREFIX[$cli]}-${N[$cli]}.json
    node -e '
      const fs = require("fs");
      const [src, dest, scenario, n, rc, wall, envs, prompt, wd] = process.argv.slice(1);
      const r = JSON.parse(fs.readFileSync(src, "utf8"));
      const out = { capture: { scenario, request_in_run: r.seq, cli_exit_status: Number(rc),
        run_wall_s: Number(Number(wall).toFixed(1)), env: envs, prompt, workdir: wd,
        upstream: "llama-server (random tiny Qwen3 model) via tests/clients/record_proxy.mjs" }, ...r };
      fs.writeFileSync(dest, JSON.stringify(out, null, 2) + "\n");
    ' "$f" "$dest" "$name" "${N[$cli]}" "$rc" "$wall" "$envs" "$prompt" "$WORKROOT/$wd"
    node -e '
      const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const s = r.response ? (r.response.status ?? "error") + (r.response.scripted ? " (scripted)" : "") : "none";
      console.log([process.argv[2], process.argv[3], r.seq, r.method + " " + r.path, s].join("\t"));
    ' "$f" "$(basename "$dest")" "$name" >>"$INDEX"
  done
  printf '%s\t%s\t%s\t%.1f s\n' "run" "$name" "$rc" "$wall" >>"$INDEX"
done

{
  echo "# Captured agent CLI requests"
  echo
  echo "Written by \`tests/clients/capture_fixtures.sh\` ($(date -u +%Y-%m-%d)): each file is one HTTP request"
  echo "a real CLI sent (method, path, headers with secrets as \"REDACTED\", JSON body exactly as sent),"
  echo "the upstream's reply (status, headers, first 64 KiB of the body) and, under \"capture\", the"
  echo "scenario (see the script). \"proxy_forwarded\" lists fields the proxy changed in the copy it"
  echo "forwarded to the random test model (token limit, early stop); the recorded body is unchanged."
  echo
  echo "| file | scenario | # in run | request | status |"
  echo "|---|---|---|---|---|"
  awk -F'\t' '$1 != "run" { printf "| %s | %s | %s | `%s` | %s |\n", $1, $2, $3, $4, $5 }' "$INDEX"
  echo
  echo "Wall times: the whole CLI run against the upstream (llama-server, 2 CPU cores, tiny random"
  echo "model, when captured): llama-server reuses the cached prefix of the previous request, so a run"
  echo "after a similar one is much faster than the first (plain-1 is cold if the server was just started)."
  echo
  echo "| run | exit status | wall time |"
  echo "|---|---|---|"
  awk -F'\t' '$1 == "run" { printf "| %s | %s | %s |\n", $2, $3, $4 }' "$INDEX"
} >"$OUT/INDEX.md"
echo "capture: wrote $(grep -vc '^run' "$INDEX") fixtures and INDEX.md to $OUT"

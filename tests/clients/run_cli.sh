#!/usr/bin/env bash
# run_cli.sh: runs one real agent CLI (Claude Code, Codex or Qwen Code, pinned in
# tests/clients/package.json) non-interactively, once, against a local LLM server, fully offline
# but for loopback, and prints the CLI's reply on stdout.
#
# Usage: run_cli.sh CLI BASE_URL WORKDIR [PROMPT]
#   CLI       claude | codex | qwen
#   BASE_URL  server root without /v1, e.g. http://127.0.0.1:8080
#             claude: ANTHROPIC_BASE_URL=BASE_URL        -> POST BASE_URL/v1/messages?beta=true
#             codex:  provider base_url=BASE_URL/v1      -> POST BASE_URL/v1/responses
#             qwen:   OPENAI_BASE_URL=BASE_URL/v1        -> POST BASE_URL/v1/chat/completions
#                     (or /v1/responses, /v1/messages with RUN_CLI_QWEN_AUTH_TYPE, below)
#   WORKDIR   scratch directory (created). Everything the CLI reads or writes lives in it:
#               WORKDIR/home     HOME, XDG_* dirs, ~/.claude, CODEX_HOME (~/.codex), ~/.qwen
#               WORKDIR/project  the CLI's working directory (the "repository" it works on)
#             Nothing of the invoking user's HOME or environment is read: the CLI runs under
#             `env -i` with only the variables set here (plus RUN_CLI_PASS_ENV).
#   PROMPT    default: "Reply with one short sentence: what is 2+2?"
#
# Environment knobs (all optional):
#   RUN_CLI_TIMEOUT=300         seconds before the CLI is killed (exit status 124, as timeout(1))
#   RUN_CLI_MODEL=NAME          model name the CLI sends (any string; llama-server and kvstash
#                               serve their one model whatever the name). Defaults: claude
#                               "claude-sonnet-4-5", codex "gpt-5.1-codex", qwen "qwen3-coder-plus".
#   RUN_CLI_QWEN_AUTH_TYPE      qwen only: openai (default, chat completions) | openai-responses
#                               (/v1/responses) | anthropic (/v1/messages)
#   RUN_CLI_CODEX_RETRIES=1     codex only: request_max_retries and stream_max_retries of the
#                               provider (Codex's defaults, 4 and 5, make a failing server slow)
#   RUN_CLI_ARGS="..."          extra arguments appended to the CLI's command line (word-split)
#   RUN_CLI_PASS_ENV="A B"      names of variables to pass through to the CLI (e.g.
#                               CLAUDE_CODE_MAX_RETRIES, API_TIMEOUT_MS, RUST_LOG, DEBUG)
#   RUN_CLI_CLIENTS_DIR=DIR     where node_modules/.bin lives (default: this script's directory)
#
# Exit status: the CLI's (0 = it finished a turn and printed the reply), 124 on timeout,
# 2 on a usage error. The CLI's own diagnostics go to stderr.
#
# Notes per CLI (observed with claude-code 2.1.328, codex 0.169.0, qwen-code 0.24.4):
# - Claude Code: auth by x-api-key (ANTHROPIC_API_KEY); -p mode never waits on a permission
#   prompt (Bash `ls` and Read ran unasked); --dangerously-skip-permissions is refused when
#   running as root, so it is not used. On 5xx or a refused connection it retries with backoff
#   for about 3 minutes; a 404 on the stream is retried once with "stream": false, then exit 1.
#   A reply ending with stop_reason "max_tokens" is an error for it (exit 1), and an empty reply
#   makes it ask again ("[Your previous response had no visible output...]").
# - Codex: config.toml written into CODEX_HOME each run; approval_policy="never" so exec never
#   waits on a prompt; workspace-write sandbox (Codex's bundled bubblewrap works here);
#   --skip-git-repo-check; --ephemeral. Codex retries a refused connection without end
#   ("Reconnecting... waiting for network"): only the timeout stops it.
# - Qwen Code: settings.json in ~/.qwen selects the auth type, disables usage statistics,
#   telemetry and the update check; the default approval mode is kept (read-only tools such as
#   glob and read_file run unasked). After the turn it may send a second, background request
#   (the "managed memory extraction subagent"). An empty reply is retried.

set -euo pipefail

usage() { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 3 && $# -le 4 ]] || usage

CLI=$1
BASE_URL=${2%/}
WORKDIR=$3
PROMPT=${4:-"Reply with one short sentence: what is 2+2?"}
TIMEOUT=${RUN_CLI_TIMEOUT:-300}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLIENTS_DIR=${RUN_CLI_CLIENTS_DIR:-$SCRIPT_DIR}
BIN=$CLIENTS_DIR/node_modules/.bin

case "$BASE_URL" in
  http://*|https://*) ;;
  *) echo "run_cli.sh: BASE_URL must start with http:// or https://" >&2; exit 2 ;;
esac
# A base URL given with a trailing /v1 is accepted too.
BASE_URL=${BASE_URL%/v1}

mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
HOME_DIR=$WORKDIR/home
PROJECT_DIR=$WORKDIR/project
mkdir -p "$HOME_DIR"/.config "$HOME_DIR"/.cache "$HOME_DIR"/.local/share "$HOME_DIR"/.local/state \
         "$HOME_DIR"/tmp "$PROJECT_DIR"
chmod 700 "$HOME_DIR"
# Give the agent something to look at if asked to list files; never overwrite the caller's.
[[ -e $PROJECT_DIR/README.md ]] || printf '# demo project\n\nA scratch project for agent CLI tests.\n' >"$PROJECT_DIR/README.md"
[[ -e $PROJECT_DIR/hello.py ]] || printf 'print("hello")\n' >"$PROJECT_DIR/hello.py"

NODE_BIN=$(command -v node || true)
[[ -n $NODE_BIN ]] || { echo "run_cli.sh: node not found in PATH" >&2; exit 2; }

# The clean environment every CLI starts from (env -i below drops everything else).
ENVV=(
  "PATH=$(dirname "$NODE_BIN"):/usr/local/bin:/usr/bin:/bin"
  "HOME=$HOME_DIR"
  "USER=${USER:-agent}" "LOGNAME=${USER:-agent}" "SHELL=/bin/bash"
  "LANG=C.UTF-8" "LC_ALL=C.UTF-8" "TERM=dumb" "NO_COLOR=1" "CI=1"
  "TMPDIR=$HOME_DIR/tmp"
  "XDG_CONFIG_HOME=$HOME_DIR/.config" "XDG_CACHE_HOME=$HOME_DIR/.cache"
  "XDG_DATA_HOME=$HOME_DIR/.local/share" "XDG_STATE_HOME=$HOME_DIR/.local/state"
  # Loopback only: no proxy, whatever the caller's environment says.
  "NO_PROXY=127.0.0.1,localhost,::1" "no_proxy=127.0.0.1,localhost,::1"
)
[[ -n ${NODE_EXTRA_CA_CERTS:-} ]] && ENVV+=("NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS")
for name in ${RUN_CLI_PASS_ENV:-}; do
  [[ -n ${!name+x} ]] && ENVV+=("$name=${!name}")
done
read -r -a EXTRA <<<"${RUN_CLI_ARGS:-}"

case "$CLI" in
  claude)
    MODEL=${RUN_CLI_MODEL:-claude-sonnet-4-5}
    mkdir -p "$HOME_DIR/.claude"
    ENVV+=(
      "ANTHROPIC_BASE_URL=$BASE_URL"
      "ANTHROPIC_API_KEY=sk-ant-dummy-kvstash-test"
      # Main model and the small/fast one (titles, summaries, ...): both the local model.
      "ANTHROPIC_MODEL=$MODEL"
      "ANTHROPIC_DEFAULT_SONNET_MODEL=$MODEL" "ANTHROPIC_DEFAULT_OPUS_MODEL=$MODEL"
      "ANTHROPIC_DEFAULT_HAIKU_MODEL=$MODEL" "ANTHROPIC_SMALL_FAST_MODEL=$MODEL"
      "CLAUDE_CONFIG_DIR=$HOME_DIR/.claude"
      # Umbrella switch: no autoupdater, bug command, error reporting (Sentry), telemetry.
      "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"
      "DISABLE_AUTOUPDATER=1" "DISABLE_TELEMETRY=1" "DISABLE_ERROR_REPORTING=1"
      "DISABLE_BUG_COMMAND=1" "DISABLE_INSTALLATION_CHECKS=1"
      "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY=1" "CLAUDE_CODE_DISABLE_TERMINAL_TITLE=1"
    )
    CMD=("$BIN/claude" -p "$PROMPT" --model "$MODEL" --output-format text "${EXTRA[@]}")
    ;;

  codex)
    MODEL=${RUN_CLI_MODEL:-gpt-5.1-codex}
    CODEX_HOME=$HOME_DIR/.codex
    mkdir -p "$CODEX_HOME"
    # Rewritten every run: the provider points at BASE_URL/v1 and speaks the Responses API.
    cat >"$CODEX_HOME/config.toml" <<EOF
# Written by tests/clients/run_cli.sh
model = "$MODEL"
model_provider = "kvstash"
approval_policy = "never"
sandbox_mode = "workspace-write"
check_for_update_on_startup = false

[model_providers.kvstash]
name = "kvstash (local)"
base_url = "$BASE_URL/v1"
env_key = "KVSTASH_API_KEY"
wire_api = "responses"
# Bounded retries and a stream idle timeout long enough for a slow CPU prefill.
request_max_retries = ${RUN_CLI_CODEX_RETRIES:-1}
stream_max_retries = ${RUN_CLI_CODEX_RETRIES:-1}
stream_idle_timeout_ms = 300000

[analytics]
enabled = false

[feedback]
enabled = false

[history]
persistence = "none"

# The plugin marketplace sync looks up api.github.com and chatgpt.com at startup; off, the
# request is the same (checked with strace: no other non-loopback traffic).
[features]
plugins = false

[projects."$PROJECT_DIR"]
trust_level = "trusted"
EOF
    ENVV+=(
      "CODEX_HOME=$CODEX_HOME"
      "KVSTASH_API_KEY=sk-dummy-kvstash-test"
      "RUST_LOG=${RUST_LOG:-error}"
    )
    CMD=("$BIN/codex" exec --skip-git-repo-check --ephemeral --color never
         -C "$PROJECT_DIR" "${EXTRA[@]}" "$PROMPT")
    ;;

  qwen)
    MODEL=${RUN_CLI_MODEL:-qwen3-coder-plus}
    AUTH=${RUN_CLI_QWEN_AUTH_TYPE:-openai}
    mkdir -p "$HOME_DIR/.qwen"
    cat >"$HOME_DIR/.qwen/settings.json" <<EOF
{
  "security": { "auth": { "selectedType": "$AUTH" } },
  "model": { "name": "$MODEL" },
  "privacy": { "usageStatisticsEnabled": false },
  "telemetry": { "enabled": false },
  "general": { "enableAutoUpdate": false, "disableAutoUpdate": true }
}
EOF
    ENVV+=(
      "QWEN_USAGE_STATISTICS_ENABLED=false" "QWEN_TELEMETRY_ENABLED=false"
      "QWEN_CODE_SKIP_UPDATE_CHECK_ONCE=true"
    )
    case "$AUTH" in
      openai|openai-responses)
        ENVV+=("OPENAI_BASE_URL=$BASE_URL/v1" "OPENAI_API_KEY=sk-dummy-kvstash-test" "OPENAI_MODEL=$MODEL") ;;
      anthropic)
        ENVV+=("ANTHROPIC_BASE_URL=$BASE_URL" "ANTHROPIC_API_KEY=sk-ant-dummy-kvstash-test" "ANTHROPIC_MODEL=$MODEL") ;;
      *) echo "run_cli.sh: RUN_CLI_QWEN_AUTH_TYPE must be openai, openai-responses or anthropic" >&2; exit 2 ;;
    esac
    CMD=("$NODE_BIN" "$BIN/qwen" -p "$PROMPT" --auth-type "$AUTH" -m "$MODEL" -o text "${EXTRA[@]}")
    ;;

  *) echo "run_cli.sh: unknown CLI '$CLI' (claude, codex or qwen)" >&2; exit 2 ;;
esac

[[ -x ${CMD[0]} || -f ${CMD[0]} ]] || { echo "run_cli.sh: ${CMD[0]} missing: run npm ci in $CLIENTS_DIR" >&2; exit 2; }

# stdin from /dev/null: claude -p and codex exec read a piped stdin as extra prompt text.
# --kill-after: a CLI that ignores SIGTERM is SIGKILLed 10 s later.
cd "$PROJECT_DIR"
set +e
env -i "${ENVV[@]}" timeout --kill-after=10 "$TIMEOUT" "${CMD[@]}" </dev/null
rc=$?
set -e
[[ $rc -eq 124 || $rc -eq 137 ]] && echo "run_cli.sh: $CLI timed out after ${TIMEOUT}s" >&2
exit $rc

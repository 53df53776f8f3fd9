#!/usr/bin/env bash
# KV bytes per token and restore GB/s per model family (bench/README.md, "Families").
#
#   bench/families.sh        # CPU: build/, 4096 tokens -> bench/results/families-cpu.md
#   NGL=-1 BIN=build-cuda TOKENS=8192 RESULT=/x/families-gpu.md bench/families.sh   # GPU
#
# Makes each model once (kvstash mkmodel, under $MODELS), runs kvstash-bench-tiers on it (llama
# also with q8_0 and q4_0 K/V) and writes one Markdown table. Real-width shapes (8B, V2-Lite) are
# built with fewer layers (mkmodel --layers): their per-layer KV rows are the real ones, so the
# restore moves real row sizes at a length a small machine prefills quickly; the full model's
# bytes per token are the measured ones times real layers / layers built. Families whose real
# shape mkmodel does not have (qwen3moe, gemma3, gpt-oss, the hybrid) run their tiny shape.
#
# Environment: BIN (build dir with kvstash and kvstash-bench-tiers), NGL (--ngl; -1: all layers
# on the GPU), TOKENS (prompt length), LAYERS (layers of the real-width shapes), MODELS (where
# models are made), RESULT (the Markdown file), ONLY (a regex: run only the matching labels),
# FULL_MODEL (a full-size llama3-8b GGUF: also run it with f16/q8_0/q4_0 K/V at FULL_TOKENS),
# THREADS (--threads), DIR (the disk tier's directory).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1  # paths below are relative to the repository root
BIN=${BIN:-build}
NGL=${NGL:-0}
TOKENS=${TOKENS:-4096}
LAYERS=${LAYERS:-4}
MODELS=${MODELS:-build/bench-models}
RESULT=${RESULT:-bench/results/families-cpu.md}
ONLY=${ONLY:-.}
FULL_MODEL=${FULL_MODEL:-}
FULL_TOKENS=${FULL_TOKENS:-8192}
THREADS=${THREADS:-0}
DIR=${DIR:-/tmp/kvstash-bench-families}
mkdir -p "$MODELS" "$(dirname "$RESULT")"
LOG=$MODELS/families.log
: > "$LOG"

# label | shape | layers built (0: all) | real layers | K/V type | reusable from (README table)
# Real layer counts are the published models' (src/engine/model_gen.cpp has the shapes).
FAMILIES="
tiny|tiny|0|2|f16|any chunk boundary
qwen3-0.6b|qwen3-0.6b|$LAYERS|28|f16|any chunk boundary
qwen3-8b|qwen3-8b|$LAYERS|36|f16|any chunk boundary
hybrid-tiny|hybrid-tiny|0|4|f16|snapshots only (recurrent state)
llama-tiny|llama-tiny|0|2|f16|any chunk boundary
llama3-8b|llama3-8b|$LAYERS|32|f16|any chunk boundary
llama3-8b|llama3-8b|$LAYERS|32|q8_0|any chunk boundary
llama3-8b|llama3-8b|$LAYERS|32|q4_0|any chunk boundary
qwen3moe-tiny|qwen3moe-tiny|0|2|f16|any chunk boundary
gemma3-tiny|gemma3-tiny|0|4|f16|snapshots only (sliding window)
gpt-oss-tiny|gpt-oss-tiny|0|2|f16|snapshots only (sliding window)
deepseek2-tiny|deepseek2-tiny|0|2|f16|any chunk boundary
deepseek2-lite|deepseek2-lite|$LAYERS|27|f16|any chunk boundary
"

model() {  # shape layers -> path (made once)
  local f=$MODELS/$1-$2l.gguf
  [ "$2" = 0 ] && f=$MODELS/$1.gguf
  if [ ! -f "$f" ]; then
    local extra=()
    [ "$2" != 0 ] && extra=(--layers "$2")
    "$BIN/kvstash" mkmodel --shape "$1" "${extra[@]}" --no-verify -o "$f" >> "$LOG" 2>&1 || return 1
  fi
  echo "$f"
}

# One bench-tiers run -> one table row. Args: label shape layers real type reusable model tokens
row() {
  local label=$1 shape=$2 layers=$3 real=$4 type=$5 reuse=$6 m=$7 n=$8 out t0 secs
  t0=$SECONDS
  out=$("$BIN/kvstash-bench-tiers" -m "$m" --ngl "$NGL" --tokens "$n" --threads "$THREADS" \
    --cache-type-k "$type" --cache-type-v "$type" --dir "$DIR" 2>> "$LOG")
  local rc=$?
  secs=$((SECONDS - t0))
  { echo "### $label, $type K/V, $n tokens (exit $rc, $secs s)"; echo; echo "$out"; echo; } >> "$RAW"
  local built=$layers
  [ "$layers" = 0 ] && built=$real
  local line
  line=$(echo "$out" | grep -E "^\| $n \|" | head -1)
  if [ -z "$line" ] || [[ "$line" == *"| error:"* ]]; then
    local why=${line#*error: }
    why=${why%|}
    [ -z "$line" ] && why="kvstash-bench-tiers exited $rc (see the raw output)"
    echo "| $label | $type | $built / $real | $n | failed: ${why} | | | | | | | $reuse |"
    return
  fi
  # | tokens | KV, B/token | recompute | RAM | warm | cold | hit TTFT | ratios | raw warm / cold |
  echo "$line" | awk -F'|' -v label="$label" -v type="$type" -v built="$built" -v real="$real" \
    -v reuse="$reuse" -v n="$n" '
    function trim(s) { gsub(/^ +| +$/, "", s); return s }
    function rate(s,  t, g) {  # "12 ms (1.234 GB/s)" -> "1.23 (12 ms)"
      t = s; sub(/ \(.*/, "", t); g = s; sub(/.*\(/, "", g); sub(/ GB\/s\).*/, "", g)
      return sprintf("%.2f (%s)", g, trim(t)) }
    function human(b) { if (b >= 1048576) return sprintf("%.1f MiB", b / 1048576)
      if (b >= 1024) return sprintf("%.1f KiB", b / 1024); return sprintf("%.0f B", b) }
    {
      bpt = $3; sub(/.*, /, "", bpt); sub(/ B\/token.*/, "", bpt); bpt += 0
      raw = trim($10); sub(/ GB\/s/, "", raw)
      printf("| %s | %s | %s / %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label, type,
             built, real, n, human(bpt), human(bpt * real / built), trim($4), rate($5), rate($6),
             rate($7), raw, reuse)
    }'
}

RAW=$(mktemp)
{
  echo "# KV bytes per token and restore GB/s per family"
  echo
  echo "bench/families.sh on $(hostname) ($(nproc) cores$([ "$NGL" != 0 ] && echo ", --ngl $NGL"))," \
    "$(date -u +%F), kvstash $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo +changes);" \
    "load before the run: $(uptime | sed 's/.*load average/load average/')."
  [ "$NGL" != 0 ] && command -v nvidia-smi > /dev/null &&
    echo "GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)."
  echo
  echo "Layers: built / real. Bytes per token: measured = KV bytes stored (chunks + entry; for"
  echo "sliding-window and hybrid models the snapshot's window or state as well) / tokens stored"
  echo "(those models store their snapshot at the last chunk boundary below the prompt's end);"
  echo "full model = measured x real / built layers. Restore columns: GB/s of the stored bytes"
  echo "(time from lookup to a loaded state); recompute is the cold prefill of the layers built."
  echo
  echo "| family | K/V | layers | tokens | bytes/token measured | bytes/token full model | recompute | RAM tier GB/s | disk warm GB/s | disk cold GB/s | raw read warm / cold GB/s | reusable from |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$RESULT"

while IFS='|' read -r label shape layers real type reuse; do
  [ -n "$label" ] || continue
  [[ "$label" =~ $ONLY ]] || continue
  echo "== $(date +%T) $label $type ($layers layers)" >&2
  if ! m=$(model "$shape" "$layers"); then
    echo "| $label | $type | $layers / $real | $TOKENS | failed: mkmodel (see $LOG) | | | | | | | $reuse |" >> "$RESULT"
    continue
  fi
  row "$label" "$shape" "$layers" "$real" "$type" "$reuse" "$m" "$TOKENS" >> "$RESULT"
done <<< "$FAMILIES"

if [ -n "$FULL_MODEL" ]; then
  for type in f16 q8_0 q4_0; do
    echo "== $(date +%T) llama3-8b full $type" >&2
    row "llama3-8b (full)" llama3-8b 0 32 "$type" "any chunk boundary" "$FULL_MODEL" \
      "$FULL_TOKENS" >> "$RESULT"
  done
fi

{
  echo
  echo "Load after the run: $(uptime | sed 's/.*load average/load average/')."
  echo
  echo "## Raw kvstash-bench-tiers output"
  echo
  cat "$RAW"
} >> "$RESULT"
rm -f "$RAW"
rm -rf "$DIR"
echo "wrote $RESULT" >&2

#!/usr/bin/env bash
# Runs the test suite on a fresh Debian 12 machine: installs and builds (./setup.sh --build-only),
# then
#   1. the whole suite (ctest: unit tests, and integration tests on real generated models, real
#      servers on loopback, a real redis-server, the real agent CLIs and vendor SDKs from npm);
#   2. the libFuzzer targets for a short run each (KVSTASH_FUZZ_RUNS, default 20000;
#      1000000 is the full run; KVSTASH_FUZZ_ARGS adds libFuzzer flags); any crash, leak, OOM or
#      timeout fails the run;
#   3. the unit and engine tests again under AddressSanitizer + UBSan (KVSTASH_SANITIZE=0 skips).
# Extra arguments go to the first ctest (e.g. -R Server).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --build-only
# The real agent CLIs and vendor SDKs the client tests run (tests/clients/package.json, pinned by
# its package-lock.json), from the npm registry. `npm install`, not `npm ci`: Qwen Code's lock
# entry names optional per-platform packages that npm never writes into the lock, and `npm ci`
# refuses the lock for them; `npm install` follows the lock and leaves it unchanged.
(cd tests/clients && npm install --no-audit --no-fund --loglevel=error >&2)
BUILD_DIR=${BUILD_DIR:-build}
(cd "$BUILD_DIR" && ctest --output-on-failure -j"$(nproc)" "$@")

echo "== fuzzing (libFuzzer, ${KVSTASH_FUZZ_RUNS:-20000} runs per target)"
cmake -S tests/fuzz -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)" >/dev/null
# Any finding fails the run: a crash, leak, OOM or timeout makes libFuzzer exit non-zero and
# write a crash-*, leak-*, oom-* or timeout-* file into $artifacts.
artifacts=build-fuzz/artifacts
rm -rf "$artifacts" && mkdir -p "$artifacts"
fuzz_failed=0
for t in cache_file http_request redis_listing; do
  work=$(mktemp -d)
  rc=0
  # Requests reach depth only when long and shaped like JSON: 1 MiB inputs and a dictionary.
  extra=(-max_len=4096)
  [ "$t" = http_request ] && extra=(-max_len=1048576 -dict=tests/fuzz/json.dict)
  build-fuzz/fuzz_$t -runs="${KVSTASH_FUZZ_RUNS:-20000}" "${extra[@]}" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" ${KVSTASH_FUZZ_ARGS:-} "$work" tests/fuzz/corpus/$t 2>&1 |
    grep -E "^Done|stat::number_of_executed_units|ERROR|SUMMARY" || rc=${PIPESTATUS[0]}
  rm -rf "$work"
  if [ "$rc" != 0 ]; then echo "fuzz_$t failed (exit $rc)"; fuzz_failed=1; fi
  # The corpus itself still passes.
  if ! build-fuzz/fuzz_$t -runs=0 tests/fuzz/corpus/$t >/dev/null 2>&1; then
    echo "fuzz_$t fails on its own corpus (tests/fuzz/corpus/$t)"
    fuzz_failed=1
  fi
done
if [ -n "$(ls -A "$artifacts")" ]; then
  echo "fuzzing found: $(ls "$artifacts") (in $artifacts)"
  fuzz_failed=1
fi
[ "$fuzz_failed" = 0 ] || exit 1

if [ "${KVSTASH_SANITIZE:-1}" = 1 ]; then
  echo "== AddressSanitizer + UBSan"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVSTASH_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$(nproc)" >/dev/null
  (cd build-asan && ASAN_OPTIONS=detect_leaks=0 ctest --output-on-failure -j"$(nproc)" \
    -R "KvBlob|Store|Evict|PrefixIndex|Keys|Disk|PrefixCache|Scope|EngineRestore|CacheRestart|Server\.|StatusPage\.|Api\.|Messages\.|Responses\.|Dialects\.|Stream\.|Whole\.|TextCutter\.|BillingHeader\." \
    -E "Families/|/[a-z0-9]+tiny |q[48]0 ")  # the other families and KV types: once, in the first run
fi

#!/usr/bin/env bash
# Runs the test suite on a fresh Debian 12 machine: installs and builds (./setup.sh --build-only),
# then
#   1. the whole suite (ctest: unit tests, and integration tests on real generated models, real
#      servers on loopback, a real redis-server);
#   2. the libFuzzer targets for a short run each (KVSTASH_FUZZ_RUNS, default 20000;
#      1000000 is the full run);
#   3. the unit and engine tests again under AddressSanitizer + UBSan (KVSTASH_SANITIZE=0 skips).
# Extra arguments go to the first ctest (e.g. -R Server).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --build-only
BUILD_DIR=${BUILD_DIR:-build}
(cd "$BUILD_DIR" && ctest --output-on-failure -j"$(nproc)" "$@")

echo "== fuzzing (libFuzzer, ${KVSTASH_FUZZ_RUNS:-20000} runs per target)"
cmake -S tests/fuzz -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)" >/dev/null
for t in cache_file http_request; do
  work=$(mktemp -d)
  build-fuzz/fuzz_$t -runs="${KVSTASH_FUZZ_RUNS:-20000}" -max_len=4096 -print_final_stats=1 \
    "$work" tests/fuzz/corpus/$t 2>&1 | grep -E "^Done|stat::number_of_executed_units|ERROR" || true
  rm -rf "$work"
  build-fuzz/fuzz_$t -runs=0 tests/fuzz/corpus/$t >/dev/null 2>&1  # the corpus itself still passes
done
# A crash leaves crash-* files behind; fail on any.
if ls crash-* >/dev/null 2>&1; then echo "fuzzing found a crash: $(ls crash-*)"; exit 1; fi

if [ "${KVSTASH_SANITIZE:-1}" = 1 ]; then
  echo "== AddressSanitizer + UBSan"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVSTASH_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$(nproc)" >/dev/null
  (cd build-asan && ASAN_OPTIONS=detect_leaks=0 ctest --output-on-failure -j"$(nproc)" \
    -R "KvBlob|Store|Evict|PrefixIndex|Keys|Disk|PrefixCache|Scope|EngineRestore|CacheRestart|Server\.")
fi

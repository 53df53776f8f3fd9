#!/usr/bin/env bash
# Runs the test suite on a fresh Debian 12 machine: installs, builds, then ctest.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --build-only
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j"$(nproc)" "$@"

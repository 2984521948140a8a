#!/usr/bin/env bash
# The whole Criterion suite once more, built with GCC under AddressSanitizer
# (leaks included) and UBSan, every report fatal (MST_SANITIZE=ON), the CPU
# and the emulated-GPU suites alike. Left out, for time (the plain run has
# them): the invariance suite's repeats under the other OpenBLAS core types
# (OpenBLAS is not instrumented, and mst's code is the same in all six), and
# the two slowest emulated cases (tests/CMakeLists.txt names them).
# Usage: tests/sanitize.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-asan}
# one PTX target: nvcc's device code is not what is checked here
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMST_WERROR=ON -DMST_SANITIZE=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90-virtual >/dev/null
cmake --build "$build" -j2 >/dev/null
ctest --test-dir "$build" --output-on-failure -E '^invariance_'

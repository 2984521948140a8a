#!/bin/sh
# coretype.sh TYPE TEST... : runs each Criterion test binary with OpenBLAS
# forced to TYPE's kernels (OPENBLAS_CORETYPE), or exits 77 (ctest: skipped)
# where this CPU cannot execute them. The invariance suites run so under
# every type, so that a BLAS kernel choice can never change a result unseen.
type=$1
shift
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
need() {
    for f in "$@"; do
        case "$flags" in
        *" $f "*) ;;
        *) echo "skipped: this CPU lacks $f, which OpenBLAS's $type kernels need"; exit 77 ;;
        esac
    done
}
case "$type" in
SkylakeX) need avx512f avx512cd avx512bw avx512dq avx512vl avx2 fma ;;
Haswell | Zen) need avx2 fma ;;
SandyBridge) need avx ;;
Nehalem) need ssse3 sse4_1 sse4_2 ;;
Prescott) need pni ;;
*) echo "coretype.sh: unknown core type \"$type\"" >&2; exit 2 ;;
esac
for t in "$@"; do
    echo "== OPENBLAS_CORETYPE=$type $t"
    OPENBLAS_CORETYPE=$type "$t" -j1 || exit 1
done

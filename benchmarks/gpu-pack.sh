#!/bin/sh
# Builds what benchmarks/gpu-check.sh runs on a GPU machine, whose image has
# nvcc but none of mst's C libraries and no package registry: a portable
# (-DMST_NATIVE=OFF) CUDA build in build-gpu/, with the shared libraries it
# needs that are not part of the CUDA toolkit or glibc copied to
# build-gpu/deps/ (about 42 MB in all). Then, on the GPU machine, in a copy of
# this checkout with build-gpu/ copied along, one command of 600 s each:
#
#   benchmarks/gpu-pack.sh                       (here)
#   benchmarks/gpu-check.sh 1; benchmarks/gpu-check.sh 2   (there)
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
# (no emulated-GPU suites there: the real device runs the same tests, and
# their static OpenBLAS copies would not fit the 64 MB carry)
# The copied libraries are found through an old-style RPATH (DT_RPATH, which
# also covers the libraries' own dependencies) rather than LD_LIBRARY_PATH,
# so that the device's Python never loads this machine's libcrypto or libffi.
cmake -S . -B build-gpu -DMST_NATIVE=OFF -DMST_CUDA=ON -DMST_SHARED_CORE=ON -DMST_CUDA_EMU=OFF -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_BUILD_RPATH="$root/build-gpu/deps;/usr/local/cuda/lib64;/usr/local/cuda/targets/x86_64-linux/lib" \
    -DCMAKE_EXE_LINKER_FLAGS=-Wl,--disable-new-dtags \
    -DCMAKE_SHARED_LINKER_FLAGS=-Wl,--disable-new-dtags >/dev/null
cmake --build build-gpu -j"$(nproc)"
# (emptied first: a rebuilt binary's RPATH would otherwise resolve to the
# old copies, and cp refuses to copy a file onto itself)
rm -rf build-gpu/deps && mkdir -p build-gpu/deps
for bin in build-gpu/mst build-gpu/libmstcore.so build-gpu/tests/test_*; do
    ldd "$bin" | awk '/=> \// {print $3}'
done | sort -u | grep -v -E '/(libc|libm|libdl|libpthread|librt|libresolv|libstdc\+\+|libgcc_s|ld-linux[^/]*|libcud[^/]*|libcublas[^/]*|libcurand[^/]*|libnvToolsExt[^/]*|libmstcore)\.so' |
    while read -r lib; do cp -L "$lib" build-gpu/deps/; done
# design.md's precision criterion is measured on a real evaluation set: the
# Fashion-MNIST test set the shipped models were evaluated on (4.4 MB)
mkdir -p build-gpu/data/fashion-mnist
cp /usr/share/datasets/fashion-mnist/t10k-*-ubyte.gz build-gpu/data/fashion-mnist/
# the performance model's instruction counts, read here from this build's
# SASS (the GPU machine may have no disassembler): gpu-check.sh prints its
# prediction beside the measurement
if python3 benchmarks/gpu_model.py --build build-gpu --write-sass build-gpu/sass.json >/dev/null 2>build-gpu/sass.err; then
    rm -f build-gpu/sass.err
else
    echo "gpu-pack.sh: no SASS counts for the model ($(tail -n 1 build-gpu/sass.err)); gpu-check.sh will try there"
fi
# the tests find their data and the mst binary by absolute paths baked in at
# configure time; gpu-check.sh links this checkout's path on the device to them
echo "$root" > build-gpu/source-dir
rm -rf build-gpu/CMakeFiles build-gpu/tests/CMakeFiles
du -sh build-gpu

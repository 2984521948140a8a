#!/bin/sh
# collect-libs.sh BINARY DIR [--without-cuda]: copies the shared libraries
# BINARY loads into DIR, but glibc's and the CUDA driver's (the base image,
# and on a GPU host the container runtime, provide those), so that a final
# stage needs no package names of its own. --without-cuda: the CUDA
# toolkit's libraries too (an nvidia/cuda runtime image has them).
set -eu
skip='/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux[^/]*|libcuda)\.so'
[ "${3:-}" = --without-cuda ] && skip='/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux[^/]*|libcud[^/]*|libcublas[^/]*|libcurand[^/]*|libnvToolsExt[^/]*)\.so'
mkdir -p "$2"
ldd "$1" | awk '/=> \// {print $3}' | grep -v -E "$skip" | while read -r lib; do cp -L "$lib" "$2/"; done

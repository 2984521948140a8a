#!/bin/bash
# docker/check.sh [cpu] [cuda]: builds the container images and runs the
# README's container commands against them, checking what they print and
# write. CI runs `docker/check.sh cpu`; `cuda` builds the CUDA image from
# local stand-ins for its nvidia/cuda bases (nothing can be pulled here):
# Debian 12 plus this machine's CUDA toolkit (devel: nvcc and the headers and
# libraries the build needs; runtime: cudart, cuBLAS, cuRAND). Without a GPU
# the CUDA image is built and its CPU path run, not its GPU path.
#
# What it needs, as root: a Docker engine (started here, if none answers, on
# the vfs storage driver with no iptables or bridge: these machines allow
# nothing else), and a debian:12-slim image (made here with debootstrap from
# the Debian mirror, if there is none).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || exec sudo -E "$0" "$@" # the engine and debootstrap want root
root=$(pwd)
parts=${*:-cpu}
want() { case " $parts " in *" $1 "*) return 0 ;; esac; return 1; }
say() { echo "docker/check.sh: $*"; }

engine() {
    docker info > /dev/null 2>&1 && return
    command -v dockerd > /dev/null && command -v debootstrap > /dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap > /dev/null
    nohup dockerd --iptables=false --bridge=none --storage-driver=vfs > /tmp/mst-dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info > /dev/null 2>&1 && return; sleep 1; done
    say "the Docker engine did not start:"
    tail -n 5 /tmp/mst-dockerd.log
    exit 1
}

# debian:12-slim from debootstrap (no registry can be reached)
base() {
    docker image inspect debian:12-slim > /dev/null 2>&1 && return
    local dir mirror=${MST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
    dir=$(mktemp -d)
    chmod 755 "$dir" # it becomes the image's /: mktemp's 0700 would lock every user but root out
    debootstrap --variant=minbase bookworm "$dir" "$mirror" > /tmp/mst-debootstrap.log 2>&1 ||
        { tail -n 5 /tmp/mst-debootstrap.log; exit 1; }
    tar -C "$dir" -c . | docker import - debian:12-slim > /dev/null
    rm -rf "$dir"
}

# The README's container commands (between its two "container commands"
# markers), run as written with DATA, OUT and the image names set.
readme_commands() {
    sed -n '/<!-- container commands: begin -->/,/<!-- container commands: end -->/p' README.md | grep -v '^<!--' |
        grep -v '^```'
}

run_readme() { # run_readme KIND: the README's lines for that image (mst or mst-cuda)
    local kind=$1 line log
    readme_commands | grep -E "docker (build|run) .*(-t|--rm.*) $kind( |$)" | while read -r line; do
        log=$(mktemp)
        say "$ ${line}"
        if ! (set -o pipefail; eval "${line/docker build/docker build --network host}") > "$log" 2>&1; then
            tail -n 20 "$log"
            say "failed: $line"
            exit 1
        fi
        cat "$log" >> "$OUT/all.log"
        tail -n 3 "$log"
    done
}

check_cpu() {
    export DATA=$root/weights/samples OUT
    OUT=$(mktemp -d)
    chmod 777 "$OUT" # the image runs as a non-root user
    run_readme mst
    # what the commands printed and wrote: the accuracy table, and the results
    # file equal to a native build's on the same set but for the timing
    grep -q "100 images, SNN" "$OUT/all.log" || { say "no accuracy table in the output"; exit 1; }
    [ -s "$OUT/results.json" ] || { say "no results file in the mounted folder"; exit 1; }
    local native=${MST_NATIVE_BIN:-build/mst}
    if [ -x "$native" ]; then
        "$native" eval --model weights/fmnist_p75.safetensors --data "$DATA" --timesteps 16 --results-file "$OUT/native.json" \
            > /dev/null
        python3 - "$OUT/results.json" "$OUT/native.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
for k in ("images_per_second", "model", "data"):
    a.pop(k, None), b.pop(k, None)
if a != b:
    sys.exit("docker/check.sh: the image's results differ from the native build's: %s" %
             sorted(k for k in a if a.get(k) != b.get(k)))
print("docker/check.sh: the image's results file equals the native build's (but for timing and paths)")
EOF
    fi
    local user
    user=$(docker run --rm --entrypoint id mst -u)
    [ "$user" != 0 ] || { say "the image runs as root"; exit 1; }
    say "cpu image: $(docker image inspect mst --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}'), runs as uid $user"
    rm -rf "$OUT"
}

# Stand-ins for nvidia/cuda's devel and runtime images: Debian plus the
# parts of this machine's toolkit a build or a run of mst needs.
standins() {
    local cuda=${CUDA_HOME:-/usr/local/cuda} ctx
    cuda=$(readlink -f "$cuda")
    [ -x "$cuda/bin/nvcc" ] || { say "no CUDA toolkit at $cuda: the CUDA image is not built"; exit 1; }
    ctx=$(mktemp -d)
    mkdir -p "$ctx/cuda/lib64" "$ctx/cuda/targets/x86_64-linux"
    cp -a "$cuda/bin" "$cuda/nvvm" "$ctx/cuda/"
    cp -aL "$cuda/include" "$ctx/cuda/include"
    for l in libcudart libcudart_static libcublas libcublasLt libcurand libcudadevrt libculibos; do cp -a "$cuda"/targets/x86_64-linux/lib/$l.* "$ctx/cuda/lib64/"; done
    ln -s ../../include "$ctx/cuda/targets/x86_64-linux/include"
    ln -s ../../lib64 "$ctx/cuda/targets/x86_64-linux/lib"
    cat > "$ctx/Dockerfile.devel" <<'EOF'
FROM debian:12-slim
COPY cuda /usr/local/cuda
RUN echo /usr/local/cuda/lib64 > /etc/ld.so.conf.d/cuda.conf && ldconfig
EOF
    cat > "$ctx/Dockerfile.runtime" <<'EOF'
FROM debian:12-slim
COPY cuda/lib64 /usr/local/cuda/lib64
RUN rm -f /usr/local/cuda/lib64/*.a && echo /usr/local/cuda/lib64 > /etc/ld.so.conf.d/cuda.conf && ldconfig
EOF
    docker build -q -f "$ctx/Dockerfile.devel" -t mst-standin:devel "$ctx" > /dev/null
    docker build -q -f "$ctx/Dockerfile.runtime" -t mst-standin:runtime "$ctx" > /dev/null
    rm -rf "$ctx"
}

check_cuda() {
    standins
    export DATA=$root/weights/samples OUT
    OUT=$(mktemp -d)
    local t0=$SECONDS
    docker build --network host --build-arg BASE_DEVEL=mst-standin:devel --build-arg BASE_RUNTIME=mst-standin:runtime \
        -f docker/Dockerfile.cuda -t mst-cuda . > "$OUT/build.log" 2>&1 || { tail -n 30 "$OUT/build.log"; exit 1; }
    say "cuda image built in $((SECONDS - t0)) s: $(docker image inspect mst-cuda --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}')"
    # no GPU here: the image's CPU path, and its CUDA path's clear refusal
    docker run --rm mst-cuda eval --model /usr/local/share/mst/weights/fmnist_p75.safetensors \
        --data /usr/local/share/mst/weights/samples --timesteps 16 > "$OUT/run.log" 2>&1
    grep -q "100 images, SNN" "$OUT/run.log" || { cat "$OUT/run.log"; exit 1; }
    if docker run --rm mst-cuda run --device cuda --model /usr/local/share/mst/weights/fmnist_p75.safetensors \
        /usr/local/share/mst/weights/samples/0_T-shirt-top > "$OUT/gpu.log" 2>&1; then
        say "the CUDA image ran on a GPU: $(tail -n 1 "$OUT/gpu.log")"
    else
        say "no GPU here; the CUDA image says: $(grep -m1 'mst:' "$OUT/gpu.log")"
    fi
    say "cuda image: its CPU path ran; $(docker run --rm --entrypoint sh mst-cuda -c 'ls /opt/mst/lib | wc -l') libraries of its own"
    rm -rf "$OUT"
}

engine
base
want cpu && check_cpu
want cuda && check_cuda
say "done"

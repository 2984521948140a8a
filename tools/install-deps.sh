#!/usr/bin/env bash
# What building and testing mst needs on Debian 12 / Ubuntu 22.04 or later.
# (The CUDA toolkit is optional and not installed here. python-matplotlib-data
# only for its public-domain photograph, which the transform test uses; Open
# MPI for mst eval across processes, which a build without it leaves out.)
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake pkg-config libopenblas-openmp-dev libjansson-dev libcriterion-dev zlib1g-dev \
  libspng-dev libturbojpeg0-dev libopenmpi-dev openmpi-bin \
  dataset-fashion-mnist python-matplotlib-data >/dev/null

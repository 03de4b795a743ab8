#!/usr/bin/env bash
# Sets up, builds and runs the main job: a byte-level Mamba-3 hybrid (Mamba-3 layers + one
# attention layer) is trained for a few minutes on the C++ standard library headers that every
# Debian machine with g++ has, then asked to continue a prompt; then the 130M-class preset is
# benchmarked on this CPU. STEPS=N shortens or lengthens the training (default 600).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build m3
mkdir -p models data
headers=$(ls -d /usr/include/c++/*/ | sort -V | tail -n 1)
build/m3 data tokenize --bytes --output data/cxx.tokens "$headers"bits/*.h   # one document per header
build/m3 train --preset mamba3-tiny --data data/cxx.tokens --steps "${STEPS:-600}" --batch 8 --seq-len 256 \
    --lr 3e-3 --warmup 30 --schedule cosine --out models/cxx
build/m3 info models/cxx
build/m3 generate models/cxx --prompt "template<typename _Tp>" --max-new-tokens 400 --top-k 20 --temperature 0.6 --seed 1
build/m3 bench --preset mamba3-130m --prompt-len 512 --decode-tokens 32

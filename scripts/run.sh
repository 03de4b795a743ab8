#!/usr/bin/env bash
# Sets up, builds and runs the main job: a byte-level Mamba-3 hybrid is initialised, described,
# and asked to continue a prompt; then the 130M-class preset is benchmarked on this CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build m3
mkdir -p models
[ -f models/tiny/model.safetensors ] || build/m3 init --preset mamba3-tiny models/tiny
build/m3 info models/tiny
build/m3 generate models/tiny --prompt "The state space model" --max-new-tokens 32 --top-k 40 --temperature 0.8 --seed 1
build/m3 bench --preset mamba3-130m --prompt-len 512 --decode-tokens 32

#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/; clang, ASan + UBSan) in build-fuzz/, writes their seed
# corpora (scripts/fuzz_seeds.py) and runs each for SECONDS (default 60) with RSS capped at 2 GB
# and 10 s per input. New inputs accumulate in build-fuzz/corpus/HARNESS; crashes, hangs and OOMs
# land in build-fuzz/findings/HARNESS/ and fail the script. Runs are recorded in FUZZING.md.
# Usage: scripts/fuzz.sh [SECONDS] [HARNESS...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DM3_FUZZ=ON \
  -DM3_TESTS=OFF -DM3_BENCH=OFF -DM3_CUDA=OFF >/dev/null
if [ $# -gt 0 ]; then
  harnesses=("$@")
else
  harnesses=()
  for f in fuzz/fuzz_*.cpp; do harnesses+=("$(basename "$f" .cpp)"); done
fi
ninja -C build-fuzz -j "$(nproc)" "${harnesses[@]}"
python3 scripts/fuzz_seeds.py build-fuzz/seeds build-fuzz
failed=0
for h in "${harnesses[@]}"; do
  mkdir -p "build-fuzz/corpus/$h" "build-fuzz/findings/$h" "build-fuzz/seeds/$h"
  echo "== $h (${secs} s)"
  # One OpenMP thread: libFuzzer runs inputs one at a time; threads would only add noise.
  if ! OMP_NUM_THREADS=1 "build-fuzz/fuzz/$h" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="build-fuzz/findings/$h/" "build-fuzz/corpus/$h" "build-fuzz/seeds/$h" \
      >"build-fuzz/findings/$h/log.txt" 2>&1; then
    failed=1
    grep -E "ERROR|SUMMARY|Test unit written" "build-fuzz/findings/$h/log.txt" || tail -20 "build-fuzz/findings/$h/log.txt"
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^Done" "build-fuzz/findings/$h/log.txt" || true
done
exit $failed

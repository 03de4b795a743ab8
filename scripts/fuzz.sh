#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/; clang, ASan + UBSan), writes their seed corpora
# (scripts/fuzz_seeds.py) and runs each for SECONDS (default 60) with RSS capped at 2 GB and 10 s
# per input, JOBS harnesses at a time (default 1). New inputs accumulate in BUILD/corpus/HARNESS;
# crashes, hangs and OOMs land in BUILD/findings/HARNESS/ and fail the script. Runs are recorded in
# FUZZING.md.
# Usage: scripts/fuzz.sh [--build DIR] [--jobs N] [SECONDS] [HARNESS...]
#   --build DIR: an existing build configured with -DM3_FUZZ=ON (CI's sanitizer build, see
#                scripts/test.sh); without it, build-fuzz/ is configured here.
set -euo pipefail
cd "$(dirname "$0")/.."
build=""
jobs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    *) break ;;
  esac
done
secs=${1:-60}
shift || true
if [ -z "$build" ]; then
  build=build-fuzz
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DM3_FUZZ=ON \
    -DM3_TESTS=OFF -DM3_BENCH=OFF -DM3_CUDA=OFF >/dev/null
fi
if [ $# -gt 0 ]; then
  harnesses=("$@")
else
  harnesses=()
  for f in fuzz/fuzz_*.cpp; do harnesses+=("$(basename "$f" .cpp)"); done
fi
ninja -C "$build" -j "$(nproc)" "${harnesses[@]}"
python3 scripts/fuzz_seeds.py "$build/seeds" "$build"

# One harness: its run's log in findings/HARNESS/log.txt; a finding prints its report.
run_one() {
  local h=$1
  mkdir -p "$build/corpus/$h" "$build/findings/$h" "$build/seeds/$h"
  # One OpenMP thread: libFuzzer runs inputs one at a time; threads would only add noise.
  if OMP_NUM_THREADS=1 "$build/fuzz/$h" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$build/findings/$h/" "$build/corpus/$h" "$build/seeds/$h" \
      >"$build/findings/$h/log.txt" 2>&1; then
    echo "== $h (${secs} s): $(grep -E '^stat::number_of_executed_units' "$build/findings/$h/log.txt" |
      awk '{print $2}') executions, peak RSS $(grep -E '^stat::peak_rss_mb' "$build/findings/$h/log.txt" |
      awk '{print $2}') MB"
  else
    echo "== $h: FINDING"
    grep -E "ERROR|SUMMARY|Test unit written" "$build/findings/$h/log.txt" || tail -20 "$build/findings/$h/log.txt"
    return 1
  fi
}

failed=0
running=0
for h in "${harnesses[@]}"; do
  run_one "$h" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
exit $failed

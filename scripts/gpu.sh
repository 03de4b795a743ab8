#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, with what scripts/gpu_bundle.sh prepared:
# binaries in build-gpu/, their shared libraries in .devlib/, golden data in shared/golden/.
# Stages (all by default, or those named): tests (build-gpu/m3_cuda_tests), sanitize
# (compute-sanitizer memcheck and racecheck over a few small layer and kernel tests, when it is
# installed), bench (m3 bench on the 130M presets in f32 and bf16), layers (build-gpu/m3_cuda_bench:
# the scan kernels at the reference's shapes, JSON in m3_layers.json). Logs go to $OUT when set (else
# a temporary folder); a summary table is printed last. Changes no GPU setting.
# Usage: scripts/gpu.sh [tests] [sanitize] [bench] [layers]; M3_GTEST_FILTER narrows the tests stage,
# M3_SANITIZER_TIMEOUT (seconds, default 240) bounds each sanitizer run.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f .gpu/bundle.tar.xz ] && tar -xJf .gpu/bundle.tar.xz
export LD_LIBRARY_PATH="$PWD/.devlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -d shared/golden ] && export M3_GOLDEN_DIR="$PWD/shared/golden"
export M3_TESTDATA_DIR="$PWD/tests/data"
export M3_BINARY_DIR="$PWD/build-gpu"  # where the CLI tests find m3 (the build's own path may not exist here)
logs="${OUT:-$(mktemp -d)}"
mkdir -p "$logs"
stages="${*:-tests sanitize bench layers}"
tests_bin=build-gpu/m3_cuda_tests
summary=()
status=0

echo "== GPUs"
nvidia-smi -L || echo "nvidia-smi failed"

# "passed P, failed F, skipped S" from a GoogleTest log.
gtest_counts() {
  awk '/^\[  PASSED  \] [0-9]+ test/ {p = $4}
       /^\[  FAILED  \] [0-9]+ test/ {f = $4}
       /^\[  SKIPPED \] [0-9]+ test/ {s = $4}
       END {printf "passed %d, failed %d, skipped %d", p, f, s}' "$1"
}

if [[ " $stages " == *" tests "* ]]; then
  echo "== CUDA tests ($tests_bin; full log $logs/cuda_tests.log)"
  "$tests_bin" --gtest_brief=1 ${M3_GTEST_FILTER:+--gtest_filter="$M3_GTEST_FILTER"} 2>&1 | tee "$logs/cuda_tests.log"
  rc=${PIPESTATUS[0]}
  [ "$rc" -ne 0 ] && status=1
  summary+=("tests       exit $rc: $(gtest_counts "$logs/cuda_tests.log")")
  while read -r name; do summary+=("  failed:   $name"); done < <(
    awk '/^\[  FAILED  \] [0-9]+ tests?, listed below/ {on = 1; next}
         on && /^\[  FAILED  \]/ {sub(/,$/, "", $4); print $4}' "$logs/cuda_tests.log" | head -20)
fi

if [[ " $stages " == *" sanitize "* ]]; then
  sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
  if [ -z "$sanitizer" ]; then
    summary+=("sanitizers  not run: compute-sanitizer not found")
  else
    # Small layers of every kind (F32 and one BF16), the kernels' own tests for memcheck.
    layer=AllKinds/CudaLayer.ForwardAndStepMatchCpu
    memcheck_filter="CudaOps.*:$layer/Mamba3_Siso_f32:$layer/Mamba3_MimoRank2_f32"
    memcheck_filter+=":$layer/Mamba3_SisoOddRopeFullGroups2_bf16:$layer/Mamba2_Base_f32:$layer/Mamba1_Base_f32"
    memcheck_filter+=":$layer/Attn_GqaRotateHalfPartial_f32:$layer/GatedMlp_f32"
    memcheck_filter+=":$layer/Mamba3_Siso130mShape_bf16:$layer/Mamba3_MimoRank2Headdim64State32_bf16"
    racecheck_filter="$layer/Mamba3_Siso130mShape_bf16:$layer/Mamba3_MimoRank2Headdim64State32_bf16:$layer/Mamba3_Siso_f32:$layer/Mamba3_MimoRank2_f32:$layer/Mamba2_Base_f32:$layer/Mamba1_Base_f32"
    racecheck_filter+=":$layer/Attn_GqaRotateHalfPartial_f32"
    for tool in memcheck racecheck; do
      filter_var="${tool}_filter"
      echo "== compute-sanitizer --tool $tool (log $logs/$tool.log)"
      timeout "${M3_SANITIZER_TIMEOUT:-240}" "$sanitizer" --tool "$tool" --error-exitcode 86 "$tests_bin" \
        --gtest_brief=1 --gtest_filter="${!filter_var}" > "$logs/$tool.log" 2>&1
      rc=$?
      tail -n 5 "$logs/$tool.log"
      verdict=$(grep -E "(ERROR|RACECHECK) SUMMARY" "$logs/$tool.log" | tail -n 1)
      [ "$rc" -eq 124 ] && verdict="timed out after ${M3_SANITIZER_TIMEOUT:-240} s"
      [ "$rc" -ne 0 ] && status=1
      summary+=("$(printf '%-11s exit %d: %s; tests %s' "$tool" "$rc" "${verdict:-no summary line}" \
        "$(gtest_counts "$logs/$tool.log")")")
    done
  fi
fi

if [[ " $stages " == *" bench "* ]]; then
  # "eager": M3_NO_GRAPHS=1, the same preset with decode steps launched one kernel at a time (the
  # baseline of the CUDA-graph replay, side by side in this run).
  for run in "mamba3-130m f32" "mamba3-130m bf16" "mamba3-130m bf16 eager" "mamba3-mimo-130m bf16" \
             "mamba3-130m-hybrid bf16" "mamba2-130m bf16" "mamba1-130m bf16"; do
    read -r preset dtype mode <<< "$run"
    log="$logs/bench_${preset}_$dtype${mode:+_$mode}.log"
    echo "== m3 bench --preset $preset --device cuda --dtype $dtype ${mode:+($mode) }(log $log)"
    if [ "$mode" = eager ]; then
      M3_NO_GRAPHS=1 build-gpu/m3 bench --preset "$preset" --device cuda --dtype "$dtype" --reps 3 2>&1 | tee "$log"
    else
      build-gpu/m3 bench --preset "$preset" --device cuda --dtype "$dtype" --reps 3 2>&1 | tee "$log"
    fi
    rc=${PIPESTATUS[0]}
    [ "$rc" -ne 0 ] && status=1
    summary+=("bench       $preset $dtype${mode:+ $mode}: exit $rc")
    while read -r line; do summary+=("  $line"); done < <(grep -E "^(prefill|decode) [0-9]+ tokens" "$log")
  done
fi

if [[ " $stages " == *" layers "* ]]; then
  log="$logs/m3_layers.log"
  echo "== build-gpu/m3_cuda_bench (log $log)"
  build-gpu/m3_cuda_bench --json "$logs/m3_layers.json" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  [ "$rc" -ne 0 ] && status=1
  summary+=("layers      exit $rc")
  # The program's final table: the lines after its "== results" heading.
  while read -r line; do summary+=("  $line"); done < <(sed -n '/^== results/,$p' "$log" | tail -n +2)
fi

echo
echo "== summary (logs in $logs)"
printf '%s\n' "${summary[@]}"
exit "$status"

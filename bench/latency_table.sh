#!/usr/bin/env bash
# The whole-model latency table of issue 10, run on the GPU machine: `m3 bench` (bf16, random
# weights) of each preset at each (batch, prompt length) of the grid, one JSON file per run, then
# bench/latency_table.py turns them into a markdown table and a PNG plot next to the seeds' H100
# rows. Each preset is initialised once into a checkpoint under $CKPT that its runs load (drawing
# 1.4 B random parameters takes far longer than loading them), removed after its runs.
#
#   M3        the m3 binary (default build-gpu/m3)
#   OUT       output folder (default bench/latency-out); JSONs in $OUT/json and all of them in
#             $OUT/runs.json (one file to copy back), table.md, latency.png
#   CKPT      scratch folder for the checkpoints (default /tmp/m3-latency-ckpt; 5.4 GB each)
#   PRESETS   presets to run (default: the four 1.4 B ones)
#   GRID      batch:prompt_len pairs (default: batch 1 at 512 1024 4096 16384, batch 128 at 512 2048 16384)
#   SKIP      preset:batch:prompt_len triples left out (default: the hybrid at 128 × 16384, whose
#             fp32 KV cache — 4 layers × 2 × 2048 floats per token, 137 GB for 2 M tokens — does
#             not fit beside the weights on one H200)
#   DECODE    decode steps per run (default 64); the table extrapolates n steps from their mean
#   DEVICE, DTYPE, REPS   passed to m3 bench (default cuda, bf16, 1)
#   REF       the reference's bench_model.json (../shared/tools/ref_bench.py PEER OUT model, run on
#             the same GPU), whose rows join the table and the plot (default: none)
set -euo pipefail
cd "$(dirname "$0")/.."

M3=${M3:-build-gpu/m3}
OUT=${OUT:-bench/latency-out}
CKPT=${CKPT:-/tmp/m3-latency-ckpt}
PRESETS=${PRESETS:-"mamba3-1.4b mamba3-mimo-1.4b mamba3-1.4b-hybrid mamba2-1.3b"}
GRID=${GRID:-"1:512 1:1024 1:4096 1:16384 128:512 128:2048 128:16384"}
SKIP=${SKIP:-"mamba3-1.4b-hybrid:128:16384"}
DECODE=${DECODE:-64}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bf16}
REPS=${REPS:-1}
REF=${REF:-}

[[ -x "$M3" ]] || { echo "latency_table.sh: no m3 binary at $M3 (set M3)" >&2; exit 1; }
mkdir -p "$OUT/json" "$OUT/logs" "$CKPT"
failed=0
for p in $PRESETS; do
  ckpt="$CKPT/$p"
  echo "== init $p"
  start=$SECONDS
  "$M3" init --preset "$p" "$ckpt" > "$OUT/logs/init-$p.txt"
  echo "   $((SECONDS - start)) s"
  for point in $GRID; do
    b=${point%%:*} n=${point##*:}
    name="$p-b$b-n$n"
    if [[ " $SKIP " == *" $p:$b:$n "* ]]; then echo "== skip $name"; continue; fi
    echo "== $name"
    start=$SECONDS
    if "$M3" bench "$ckpt" --device "$DEVICE" --dtype "$DTYPE" --batch "$b" --prompt-len "$n" \
        --decode-tokens "$DECODE" --reps "$REPS" --json "$OUT/json/$name.json" > "$OUT/logs/$name.txt" 2>&1; then
      grep -E "^(prefill|decode|state per)" "$OUT/logs/$name.txt" || true
    else
      echo "   FAILED (log: $OUT/logs/$name.txt)"; tail -3 "$OUT/logs/$name.txt"; failed=$((failed + 1))
    fi
    echo "   $((SECONDS - start)) s"
  done
  rm -rf "$ckpt"
done
python3 bench/latency_table.py "$OUT/json" --out "$OUT" --save "$OUT/runs.json" ${REF:+--ref "$REF"} | tee "$OUT/table.md"
echo "latency_table.sh: $failed run(s) failed; table in $OUT/table.md"
[[ $failed -eq 0 ]]

// The work of a model's passes, for the benchmarks (m3 bench, bench/cpu_bench.cpp): the FLOPs of
// the matrix products and of the sequence mixers in a prefill, and the bytes a decode step must
// move. Counted from the configuration and the parameters, not measured.
#pragma once
#include <cstdint>

#include "m3/model.h"

namespace m3 {

struct PrefillWork {
  // 2 per weight of every projection matrix (2-D `*.weight`) per token — the embedding is
  // gathered, not multiplied — and lm_head for the rows that get logits.
  double matrix_flops = 0;
  // The SSM scans as the CPU runs them, per token: Mamba-3 (src/cpu/mamba3_scan.cpp, spec/mamba3.md
  // §6 with chunk 1) 1 multiply and 2R FMAs per head and state element (decay, update, output);
  // Mamba-2 (src/cpu/ssd_scan.cpp) per head the chunk's C·Bᵀ row and its product with x
  // (2Q(N + P)), the carried state's read-out and update (4PN); Mamba-1 (src/cpu/selective_scan.cpp)
  // 2 FMAs per channel and state element (its exponentials are not counted).
  double scan_flops = 0;
  // Attention scores and their weighted sum: 4·head_dim per (query, visible key) pair and head.
  double attention_flops = 0;
};
// One sequence of `len` tokens from a fresh state, with logits for `logit_rows` rows.
PrefillWork prefill_work(const Model& m, int64_t len, int64_t logit_rows);

struct DecodeBytes {
  // Every parameter once; a tied embedding once (as lm_head), an untied one only its gathered row.
  double weights = 0;
  // The decode state as it is before the step: recurrent state, conv windows, KV cache.
  double state_read = 0;
  // The recurrent state and conv windows rewritten, and one new KV row per attention layer.
  double state_written = 0;
  double total() const { return weights + state_read + state_written; }
};
// One step of one sequence whose state is `s`.
DecodeBytes decode_bytes(const Model& m, const SequenceState& s);
// All bytes of `steps` steps from state `before` to state `after`, counted outside the timed
// loop: a step's bytes grow linearly with the tokens seen (the KV cache), so they are the mean of
// the first and last step's, and the last step's are `after`'s less one step of growth.
double decode_bytes_of_steps(const Model& m, const SequenceState& before, const SequenceState& after, int64_t steps);

}  // namespace m3

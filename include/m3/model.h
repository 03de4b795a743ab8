// A language model in the reference layout (spec/model.md): embedding, a list of blocks
// (norm → mixer, and norm2 → MLP when d_intermediate > 0) with the residual in float32, final
// norm, lm_head. Runs on a backend (cpu, cuda) picked by a DeviceSpec; the host keeps the float32
// parameters (save, parameters()), the backend its own copies and the decode state pool.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "m3/config.h"
#include "m3/device.h"
#include "m3/safetensors.h"
#include "m3/state.h"

namespace m3 {

class Model {
 public:
  // Loads DIR/config.json and DIR/model.safetensors (or its sharded index). Every tensor is
  // checked for presence, shape, dtype and finite values; errors name the file and tensor.
  static Model load(const std::string& dir, const DeviceSpec& device = {});
  // A model with freshly initialised parameters (spec/model.md §6), deterministic in `seed`.
  static Model init(const ModelConfig& c, uint64_t seed, const DeviceSpec& device = {});
  // Writes config.json and model.safetensors into dir (created if needed), atomically per file.
  void save(const std::string& dir) const;

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelConfig& config() const;
  int64_t n_params() const;
  std::vector<std::string> describe_layers() const;
  // A zero state in a slot of the model's state pool (on the model's device).
  SequenceState new_state() const;
  // Each layer's per-sequence state buffers.
  std::vector<LayerStateSpec> state_specs() const;
  // Bytes one sequence's state occupies in the pool when it holds `positions` KV rows.
  size_t state_bytes(int64_t positions) const;
  // Replaces the growable state pool with a fixed one of n_slots slots, each with room for
  // kv_positions tokens of KV cache (a server's pool, sized from a memory budget): new_state()
  // and forks past n_slots, and sequences past kv_positions, then fail with an m3::Error instead
  // of growing. Only while no state of this model is alive.
  void fix_state_pool(int64_t n_slots, int64_t kv_positions);

  const DeviceSpec& device() const;
  // "cpu (16 threads, f32)", "cuda:0 NVIDIA H200, bf16 matrices"
  std::string device_description() const;
  // Device bytes held by weights (0 on the CPU, which uses the host parameters in place).
  size_t device_weight_bytes() const;

  // Parallel form over a packed batch: tokens [n_tokens], sequence i = rows
  // [cu_seqlens[i], cu_seqlens[i+1]). states[i] is sequence i's starting state and is left as its
  // state after its last token. logits: [n_tokens, vocab_padded], or [n_seqs, vocab_padded] (the
  // last token of each sequence) when last_only.
  // A batch of more than max_tokens_per_pass() tokens runs in passes of at most that many, so
  // activation memory stays bounded whatever the prompt length: each pass takes from every
  // unfinished sequence, in order, up to max(1, budget / unfinished) of its next tokens (all
  // sequences advance together), each continuing from the state the previous pass left. The
  // result equals one pass up to float rounding; an error in a later pass leaves the states
  // advanced by the passes before it.
  void forward(std::span<const int32_t> tokens, std::span<const int64_t> cu_seqlens,
               std::span<SequenceState* const> states, float* logits, bool last_only = false);
  // The token budget of one forward pass (default 16384; at least 1).
  void set_max_tokens_per_pass(int64_t n);
  int64_t max_tokens_per_pass() const;
  // Recurrent form: one token for each sequence; logits [n, vocab_padded]. States must be
  // distinct (one token per sequence).
  void step(std::span<const int32_t> tokens, std::span<SequenceState* const> states, float* logits);

  // Parameters with their checkpoint names (float32 views).
  NamedTensors parameters() const;

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace m3

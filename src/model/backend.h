// The backend seam: everything the model graph (model/model.cpp) needs from a device. A backend
// owns device memory, builds the layers from host float32 parameters, and runs the graph's own
// ops (embedding gather, norms fused with the residual add, final norm + lm_head). src/model/
// includes no backend: backends implement this interface (cpu/backend.cpp, cuda/backend.cpp) and
// open_backend (devices/open_backend.cpp) picks one.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "m3/config.h"
#include "m3/device.h"
#include "model/layer.h"

namespace m3 {

// The pre-norm of a block (spec/model.md §2) fused with the residual add before it:
// residual += add (when add is not null), then normed = norm(residual). RMSNorm or LayerNorm.
class BlockNorm {
 public:
  virtual ~BlockNorm() = default;
  virtual void forward(float* residual, const float* add, float* normed, int64_t T) = 0;
};

// Both ends of the model: the embedding gather and the final norm + lm_head (tied or not).
class ModelEnds {
 public:
  virtual ~ModelEnds() = default;
  // x[n, d_model] = embedding[tokens[i]]; tokens in the backend's memory, already range-checked.
  virtual void embed(float* x, const int32_t* tokens, int64_t n) = 0;
  // For each of n rows r = rows[i] (backend memory): h = residual[r] + add[r] (add may be null),
  // logits[i, vocab_padded] = lm_head · norm_f(h). residual is not modified.
  virtual void logits(float* out, const float* residual, const float* add, const int64_t* rows, int64_t n) = 0;
};

// Ceilings of the device, measured for the benchmarks (m3 bench): the matrix-product rate that
// bounds prefill and the memory bandwidth that bounds decode. Probes keep their buffers so a
// benchmark can measure again between its own runs.
class RooflineProbe {
 public:
  virtual ~RooflineProbe() = default;
  // Best of `reps` products [M, K] · [N, K]ᵀ in the backend's matrix precision, GFLOP/s.
  virtual double matmul_gflops(int reps) = 0;
  // Best of `reps` passes over a buffer much larger than the caches, GB/s (CPU: a streaming read;
  // CUDA: a device-to-device copy counting bytes read plus bytes written).
  virtual double memory_gbps(int reps) = 0;
  virtual std::string describe() const = 0;  // what the two probes run, for the report
};

// Device work recorded once and replayed (a CUDA graph): the kernels, their arguments and the
// device addresses they read and write are fixed at recording; the data at those addresses is
// each replay's.
class Recording {
 public:
  virtual ~Recording() = default;
  // Queues the recorded work; false (and nothing queued) when device memory was allocated since
  // the recording, which may have moved what it points at.
  virtual bool replay() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const DeviceSpec& device() const = 0;
  // For m3 info and bench: "cpu (16 threads)", "cuda:0 NVIDIA H200 (bf16)".
  virtual std::string describe() const = 0;

  // Memory in the backend's address space, zero-filled, freed when the last owner goes.
  virtual std::shared_ptr<void> alloc(size_t bytes) = 0;
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;  // within the device
  virtual void zero(void* dst, size_t bytes) = 0;
  // Waits for all work queued so far (the CPU backend runs everything synchronously).
  virtual void synchronize() = 0;
  // Bytes the layers and ends built so far hold in device memory (weights and their scratch).
  virtual size_t weight_bytes() const = 0;

  // Records the device work `work` queues, without running it; null when the backend has no
  // recordings (the CPU) or `work` cannot be recorded (then nothing was queued either).
  virtual std::unique_ptr<Recording> record(const std::function<void()>& work) { return nullptr; }

  virtual std::unique_ptr<RooflineProbe> make_roofline_probe(int64_t M, int64_t N, int64_t K) = 0;

  virtual std::unique_ptr<Layer> make_mamba3(const Mamba3Config& c, int64_t d_model, ParamMap p) = 0;
  virtual std::unique_ptr<Layer> make_mamba2(const Mamba2Config& c, int64_t d_model, ParamMap p) = 0;
  virtual std::unique_ptr<Layer> make_mamba1(const Mamba1Config& c, int64_t d_model, ParamMap p) = 0;
  virtual std::unique_ptr<Layer> make_attention(const AttnConfig& c, int64_t d_model, ParamMap p) = 0;
  virtual std::unique_ptr<Layer> make_gated_mlp(int64_t d_model, int64_t hidden, ParamMap p) = 0;
  // The Hugging Face hybrids' layers (as transformers defines them): relu² MLP, mixture of experts, and layers
  // side by side on one input with their outputs summed (state: theirs, concatenated in order).
  virtual std::unique_ptr<Layer> make_mlp(const MlpConfig& c, int64_t d_model, ParamMap p) = 0;
  virtual std::unique_ptr<Layer> make_moe(const MoeConfig& c, int64_t d_model, ParamMap p) = 0;
  virtual std::unique_ptr<Layer> make_parallel(std::vector<std::unique_ptr<Layer>> parts, int64_t d_model) = 0;
  // Zamba2's hybrid layer (MixerKind::Zamba2Hybrid, model/specs.h): p its parameters, ssm_norm
  // "weight" [d_model] of the Mamba-2 input's RMSNorm. Its input rows are [h | e] (2·d_model wide,
  // zamba2_rows); its output is the Mamba-2 mixer's.
  virtual std::unique_ptr<Layer> make_zamba2_hybrid(const ModelConfig& c, ParamMap p, ParamMap ssm_norm) = 0;
  // The input of a Zamba2 hybrid layer: residual += add (when add is not null), then
  // rows[t] = [residual[t] | emb[t]] for T rows of d_model ([T, 2·d_model]).
  virtual void zamba2_rows(float* rows, float* residual, const float* add, const float* emb, int64_t T,
                           int64_t d_model) = 0;
  // p: "weight" (and "bias" for LayerNorm, rms_norm false).
  virtual std::unique_ptr<BlockNorm> make_norm(int64_t d_model, bool rms_norm, float eps, ParamMap p) = 0;
  // embedding [vocab_padded, d_model]; norm_f as for make_norm; lm_head [vocab_padded, d_model]
  // (the embedding itself when tied).
  virtual std::unique_ptr<ModelEnds> make_ends(const ModelConfig& c, const Tensor& embedding, ParamMap norm_f,
                                               const Tensor& lm_head) = 0;
};

// The backend for `spec`; m3::Error when this build or machine has none (no CUDA at build time,
// no GPU, a device index past the count).
std::shared_ptr<Backend> open_backend(const DeviceSpec& spec);

}  // namespace m3

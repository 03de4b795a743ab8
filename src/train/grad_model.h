// A language model for training on the CPU (spec/model.md §2): its parameters and gradients as
// arrays of T (float to train, double to check gradients), a forward that keeps what the
// backward needs, and the backward of the mean next-token cross-entropy down to every parameter.
#pragma once
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "m3/config.h"
#include "m3/safetensors.h"

namespace m3::train {

template <class T>
class GradModel {
 public:
  // params: every tensor of the model in checkpoint order (Model::parameters()).
  GradModel(const ModelConfig& c, const NamedTensors& params);
  ~GradModel();
  GradModel(GradModel&&) noexcept;

  const ModelConfig& config() const;
  // Parameters and gradients, index-aligned, in checkpoint order (lm_head only when untied).
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  std::vector<std::vector<T>> values, grads;

  void zero_grad();
  // Forward over a packed batch (tokens [n], sequence i = [cu[i], cu[i+1]), each from a zero
  // state) and the cross-entropy of each position's logits against targets[t] (< 0: ignored),
  // summed and divided by `count` (0: the number of targets). With backward, adds the loss's
  // gradient into grads. Returns the loss.
  double forward_backward(std::span<const int32_t> tokens, const std::vector<int64_t>& cu,
                          std::span<const int32_t> targets, double count = 0, bool backward = true);
  // The logits [n_tokens, vocab_padded] of the last forward.
  const std::vector<T>& logits() const;
  // The parameters as tensors of `dtype` (F32 or F64) under their checkpoint names; with grads,
  // the gradients instead, named "grad.<name>".
  NamedTensors tensors(DType dtype, bool grads = false) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace m3::train

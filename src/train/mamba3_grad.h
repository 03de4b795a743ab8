// Mamba-3 mixer forward and backward for training (spec/mamba3.md), SISO and MIMO, every option.
// The forward walks the recurrence of §4 per head and keeps the state at the start of every
// chunk of c.chunk_size tokens; the backward recomputes one chunk's states from its checkpoint
// and runs the recurrence's adjoint backwards through it, so memory is O(tokens/chunk · P · N)
// per head rather than O(tokens · P · N).
#pragma once
#include <memory>
#include <vector>

#include "train/grad_layer.h"

namespace m3::train {

template <class T>
class Mamba3Grad final : public GradLayer<T> {
 public:
  Mamba3Grad(const Mamba3Config& c, int64_t d_model, ParamRefs<T> p);
  ~Mamba3Grad() override;

  // One sequence's state, as mamba3_state_spec lays it out: angle [H, S], ssm [H, P, N],
  // k [R, H, N], v [H, P], concatenated.
  int64_t state_size() const;
  // Carried-in states of the next forward's sequences, n_seqs · state_size() values (empty: zero
  // states). After backward, d_state_in holds the loss gradient with respect to them.
  std::vector<T> state_in, d_state_in;
  // After forward: each sequence's state after its last token (same layout).
  std::vector<T> state_out;

  void forward(const T* x, T* y, const std::vector<int64_t>& cu) override;
  void backward(const T* dy, T* dx) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

template <class T>
std::unique_ptr<GradLayer<T>> make_mamba3_grad(const Mamba3Config& c, int64_t d_model, ParamRefs<T> p) {
  return std::make_unique<Mamba3Grad<T>>(c, d_model, std::move(p));
}

}  // namespace m3::train

#include "model/work.h"

#include <algorithm>
#include <string>

namespace m3 {

PrefillWork prefill_work(const Model& m, int64_t len, int64_t logit_rows) {
  const ModelConfig& c = m.config();
  PrefillWork w;
  double matrix_weights = 0;
  for (const auto& [name, t] : m.parameters())
    if (t.shape.size() == 2 && name.ends_with(".weight") && name != "backbone.embedding.weight" &&
        name != "lm_head.weight")
      matrix_weights += double(t.numel());
  w.matrix_flops = 2.0 * matrix_weights * double(len) + 2.0 * double(c.vocab_padded() * c.d_model) * double(logit_rows);
  const double L = double(len);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const MixerKind kind = c.layer_kind(i);
    if (kind == MixerKind::Mamba3) {
      const auto& s = std::get<Mamba3Config>(c.ssm);
      w.scan_flops += L * double(s.nheads * s.headdim * s.d_state) * double(1 + 4 * s.rank());
    }
    if (kind == MixerKind::Mamba2 || kind == MixerKind::AttentionMamba2 || kind == MixerKind::Zamba2Hybrid) {
      const auto& s = std::get<Mamba2Config>(c.ssm);
      const double Q = double(std::min(s.chunk_size, len)), P = double(s.headdim), N = double(s.d_state);
      w.scan_flops += L * double(s.nheads) * (2 * Q * (N + P) + 4 * P * N);
    } else if (kind == MixerKind::Mamba1) {
      const auto& s = std::get<Mamba1Config>(c.ssm);
      w.scan_flops += L * double(s.d_inner * s.d_state) * 4;
    }
    if (kind == MixerKind::Attention || kind == MixerKind::AttentionMamba2 || kind == MixerKind::Zamba2Hybrid) {
      const double pairs = c.attn.causal ? L * (L + 1) / 2 : L * L;
      w.attention_flops += 4.0 * double(c.attn.head_dim * c.attn.num_heads) * pairs;
    }
  }
  return w;
}

DecodeBytes decode_bytes(const Model& m, const SequenceState& s) {
  const ModelConfig& c = m.config();
  DecodeBytes b;
  const int64_t embedding = c.vocab_padded() * c.d_model;
  b.weights = 4.0 * double(m.n_params() - (c.tie_embeddings ? 0 : embedding - c.d_model));
  b.state_read = double(s.bytes());
  // A KV buffer gains one row per step; every other buffer is rewritten whole.
  for (const LayerStateSpec& layer : m.state_specs())
    for (const StateBufferSpec& buf : layer) b.state_written += 4.0 * double(buf.row_numel());
  return b;
}

double decode_bytes_of_steps(const Model& m, const SequenceState& before, const SequenceState& after, int64_t steps) {
  if (steps <= 0) return 0;
  const double first = decode_bytes(m, before).total(), next = decode_bytes(m, after).total();
  const double growth = (next - first) / double(steps);
  return double(steps) * (first + (next - growth)) / 2;
}

}  // namespace m3

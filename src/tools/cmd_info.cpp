// m3 info DIR: each layer's kind and options (its Layer::describe), parameter count, decode-state bytes per
// sequence.
#include <cstdio>

#include "m3/model.h"
#include "tools/commands.h"

namespace m3::cli {

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Describe a checkpoint: layers, parameters, decode state per sequence");
  auto dir = std::make_shared<std::string>();
  auto dev = std::make_shared<DeviceOptions>();
  cmd->add_option("DIR", *dir, "checkpoint directory (config.json + model.safetensors)")->required();
  add_device_options(cmd, *dev);
  cmd->callback([dir, dev] {
    Model m = Model::load(*dir, dev->spec());
    const ModelConfig& c = m.config();
    std::printf("model: %s\n", dir->c_str());
    std::printf("d_model %lld, %lld layers, vocab %lld (padded %lld), %s embeddings, %s\n", (long long)c.d_model,
                (long long)c.n_layer, (long long)c.vocab_size, (long long)c.vocab_padded(),
                c.tie_embeddings ? "tied" : "untied", c.rms_norm ? "RMSNorm" : "LayerNorm");
    auto layers = m.describe_layers();
    for (size_t i = 0; i < layers.size(); ++i) std::printf("  layer %2zu: %s\n", i, layers[i].c_str());
    std::printf("parameters: %lld (%.1f M)\n", (long long)m.n_params(), double(m.n_params()) / 1e6);
    SequenceState s = m.new_state();
    int64_t kv_per_token = 0;
    for (const LayerStateSpec& layer : m.state_specs())
      for (const StateBufferSpec& buf : layer)
        if (buf.kv) kv_per_token += buf.row_numel() * 4;
    std::printf("decode state per sequence: %zu bytes fixed", s.bytes());
    if (kv_per_token) std::printf(" + %lld bytes per token of context (KV cache)", (long long)kv_per_token);
    std::printf("\n");
    std::printf("device: %s\n", m.device_description().c_str());
    if (m.device().kind != DeviceKind::CPU) {
      std::printf("device memory: weights %.1f MiB; decode state per sequence %.3f MiB at 1K tokens, %.3f MiB at 1M tokens\n",
                  double(m.device_weight_bytes()) / 1048576.0, double(s.bytes()) / 1048576.0 +
                  double(kv_per_token) * 1024 / 1048576.0, double(s.bytes()) / 1048576.0 +
                  double(kv_per_token) * 1048576.0 / 1048576.0);
    }
  });
}

}  // namespace m3::cli

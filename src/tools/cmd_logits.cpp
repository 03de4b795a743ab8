// m3 logits DIR --input IN.safetensors --output OUT.safetensors: input_ids int64 or int32
// [batch, len] → logits float32 [batch, len, vocab_padded], for checking a checkpoint against a
// reference.
#include "io/input_ids.h"
#include "m3/error.h"
#include "m3/model.h"
#include "tools/commands.h"

namespace m3::cli {

void add_logits_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("logits", "Compute logits of every position for a batch of token ids");
  struct Args { std::string dir, input, output; DeviceOptions dev; };
  auto a = std::make_shared<Args>();
  add_device_options(cmd, a->dev);
  cmd->add_option("DIR", a->dir, "checkpoint directory")->required();
  cmd->add_option("--input", a->input, "safetensors file with input_ids (int64 or int32, [batch, len])")->required();
  cmd->add_option("--output", a->output, "safetensors file to write logits (float32 [batch, len, vocab_padded])")->required();
  cmd->callback([a] {
    SafetensorsFile in = SafetensorsFile::open(a->input);
    Model m = Model::load(a->dir, a->dev.spec());
    const int64_t V = m.config().vocab_padded();
    const InputIds ids = read_input_ids(in, V);
    const int64_t B = ids.batch, L = ids.len;
    const std::vector<int32_t>& tokens = ids.tokens;
    std::vector<int64_t> cu(static_cast<size_t>(B + 1));
    for (int64_t b = 0; b <= B; ++b) cu[size_t(b)] = b * L;
    std::vector<SequenceState> states;
    for (int64_t b = 0; b < B; ++b) states.push_back(m.new_state());
    std::vector<SequenceState*> sp;
    for (auto& s : states) sp.push_back(&s);
    Tensor logits = Tensor::zeros(DType::F32, {B, L, V});
    m.forward(tokens, cu, sp, logits.f32());
    save_safetensors(a->output, {{"logits", logits}});
  });
}

}  // namespace m3::cli

// m3 logits DIR --input IN.safetensors --output OUT.safetensors: input_ids int64 or int32
// [batch, len] → logits float32 [batch, len, vocab_padded], for checking a checkpoint against a
// reference.
#include <cstring>

#include "m3/error.h"
#include "m3/model.h"
#include "tools/commands.h"

namespace m3::cli {

namespace {

// Element i of an integer tensor. Copied out byte-wise: a safetensors data section is only
// byte-aligned, so a typed pointer into the mapping may be misaligned.
template <class T>
int64_t element(const Tensor& t, int64_t i) {
  T v;
  std::memcpy(&v, static_cast<const char*>(t.data) + size_t(i) * sizeof(T), sizeof(T));
  return int64_t(v);
}

}  // namespace

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
    Tensor ids = in.get("input_ids");
    check(ids.shape.size() == 2, a->input + ": input_ids must be [batch, len], found " + shape_str(ids.shape));
    check(ids.dtype == DType::I64 || ids.dtype == DType::I32,
          a->input + ": input_ids must be I64 or I32, found " + dtype_name(ids.dtype));
    Model m = Model::load(a->dir, a->dev.spec());
    const int64_t B = ids.shape[0], L = ids.shape[1], V = m.config().vocab_padded();
    std::vector<int32_t> tokens(static_cast<size_t>(B * L));
    for (int64_t i = 0; i < B * L; ++i) {
      const int64_t v = ids.dtype == DType::I64 ? element<int64_t>(ids, i) : element<int32_t>(ids, i);
      check(v >= 0 && v < V, a->input + ": input_ids holds " + std::to_string(v) + ", outside [0, " + std::to_string(V) + ")");
      tokens[size_t(i)] = int32_t(v);
    }
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

// m3 grad DIR --input IDS.safetensors --output GRADS.safetensors [--f64]: the mean next-token
// cross-entropy of input_ids [batch, len] (positions 0…len−2 of every row, softmax over all
// vocab_padded logits, as ../shared/golden/README.md defines it) and its gradient with respect
// to every parameter, written as `loss` and `grad.<name>`.
#include <cstdio>

#include "io/input_ids.h"
#include "m3/error.h"
#include "m3/model.h"
#include "tools/commands.h"
#include "train/grad_model.h"

namespace m3::cli {

namespace {

template <class T>
void write_grads(const Model& m, const std::vector<int32_t>& tokens, int64_t B, int64_t L, DType dt,
                 const std::string& output) {
  train::GradModel<T> g(m.config(), m.parameters());
  std::vector<int64_t> cu(size_t(B + 1));
  std::vector<int32_t> targets(tokens.size(), -1);
  for (int64_t b = 0; b <= B; ++b) cu[size_t(b)] = b * L;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < L; ++t) targets[size_t(b * L + t)] = tokens[size_t(b * L + t + 1)];
  const double loss = g.forward_backward(tokens, cu, targets);
  NamedTensors out = g.tensors(dt, true);
  Tensor l = Tensor::zeros(dt, {1});
  if (dt == DType::F64) l.ptr<double>()[0] = loss;
  else l.ptr<float>()[0] = float(loss);
  out.insert(out.begin(), {"loss", l});
  save_safetensors(output, out);
  std::printf("loss %.9g\n", loss);
}

}  // namespace

void add_grad_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("grad", "Mean next-token cross-entropy of a batch and its gradient of every parameter");
  struct Args { std::string dir, input, output; bool f64 = false; };
  auto a = std::make_shared<Args>();
  cmd->add_option("DIR", a->dir, "checkpoint directory")->required();
  cmd->add_option("--input", a->input, "safetensors file with input_ids (int64 or int32, [batch, len])")->required();
  cmd->add_option("--output", a->output, "safetensors file to write `loss` and `grad.<parameter>`")->required();
  cmd->add_flag("--f64", a->f64, "compute and write in float64 (default float32)");
  cmd->callback([a] {
    Model m = Model::load(a->dir);
    const InputIds in = read_input_ids(SafetensorsFile::open(a->input), m.config().vocab_padded());
    check(in.len >= 2, a->input + ": input_ids needs at least 2 tokens per row for a next-token loss");
    const int64_t B = in.batch, L = in.len;
    const std::vector<int32_t>& tokens = in.tokens;
    if (a->f64) write_grads<double>(m, tokens, B, L, DType::F64, a->output);
    else write_grads<float>(m, tokens, B, L, DType::F32, a->output);
  });
}

}  // namespace m3::cli

// m3 grad DIR --input IDS.safetensors --output GRADS.safetensors [--f64]: the mean next-token
// cross-entropy of input_ids [batch, len] (positions 0…len−2 of every row, softmax over all
// vocab_padded logits, as ../shared/golden/README.md defines it) and its gradient with respect
// to every parameter, written as `loss` and `grad.<name>`.
#include <cstring>

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
    SafetensorsFile in = SafetensorsFile::open(a->input);
    Tensor ids = in.get("input_ids");
    check(ids.shape.size() == 2 && ids.shape[1] >= 2,
          a->input + ": input_ids must be [batch, len] with len >= 2, found " + shape_str(ids.shape));
    check(ids.dtype == DType::I64 || ids.dtype == DType::I32,
          a->input + ": input_ids must be I64 or I32, found " + dtype_name(ids.dtype));
    Model m = Model::load(a->dir);
    const int64_t B = ids.shape[0], L = ids.shape[1], V = m.config().vocab_padded();
    std::vector<int32_t> tokens(size_t(B * L));
    for (int64_t i = 0; i < B * L; ++i) {
      int64_t v;
      if (ids.dtype == DType::I64) std::memcpy(&v, static_cast<const char*>(ids.data) + i * 8, 8);
      else {
        int32_t v32;
        std::memcpy(&v32, static_cast<const char*>(ids.data) + i * 4, 4);
        v = v32;
      }
      check(v >= 0 && v < V, a->input + ": input_ids holds " + std::to_string(v) + ", outside [0, " + std::to_string(V) + ")");
      tokens[size_t(i)] = int32_t(v);
    }
    if (a->f64) write_grads<double>(m, tokens, B, L, DType::F64, a->output);
    else write_grads<float>(m, tokens, B, L, DType::F32, a->output);
  });
}

}  // namespace m3::cli

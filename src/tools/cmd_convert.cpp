// m3 convert DIR OUT: a checkpoint directory's tensors (safetensors or pytorch_model.bin, sharded or
// not) written as OUT/model.safetensors in their own dtypes, with DIR's JSON and tokenizer files
// copied beside it; every file written atomically.
#include <cstdio>
#include <filesystem>

#include "io/files.h"
#include "m3/error.h"
#include "m3/safetensors.h"
#include "tools/commands.h"

namespace m3::cli {

void add_convert_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Write a checkpoint directory (e.g. pytorch_model.bin) as safetensors");
  auto dir = std::make_shared<std::string>(), out = std::make_shared<std::string>();
  cmd->add_option("dir", *dir, "Checkpoint directory")->required();
  cmd->add_option("out", *out, "Output directory (model.safetensors, config and tokenizer files)")->required();
  cmd->callback([dir, out] {
    namespace fs = std::filesystem;
    const CheckpointTensors ck = CheckpointTensors::open_dir(*dir);
    NamedTensors tensors;
    for (const auto& n : ck.names()) tensors.emplace_back(n, ck.get(n));
    check(!fs::exists(fs::path(*out) / "model.safetensors"), *out + "/model.safetensors already exists");
    fs::create_directories(*out);
    save_safetensors((fs::path(*out) / "model.safetensors").string(), tensors, {{"format", "pt"}});
    for (const char* f : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                          "special_tokens_map.json"})
      if (fs::exists(fs::path(*dir) / f))
        write_file_atomic((fs::path(*out) / f).string(), read_file((fs::path(*dir) / f).string()));
    std::printf("%zu tensors -> %s\n", tensors.size(), (fs::path(*out) / "model.safetensors").c_str());
  });
}

}  // namespace m3::cli

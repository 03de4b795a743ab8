// m3 init --preset NAME DIR: a randomly initialised checkpoint (spec/model.md §6).
#include <cstdio>
#include <filesystem>

#include "m3/error.h"
#include "m3/model.h"
#include "m3/presets.h"
#include "tools/commands.h"

namespace m3::cli {

void add_init_command(CLI::App& app) {
  std::string names;
  for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
  auto* cmd = app.add_subcommand("init", "Write a randomly initialised checkpoint of a named shape");
  struct Args { std::string preset, dir; uint64_t seed = 0; bool force = false; };
  auto a = std::make_shared<Args>();
  cmd->add_option("--preset", a->preset, "model shape: " + names)->required();
  cmd->add_option("--seed", a->seed, "random seed")->default_val(0);
  cmd->add_option("DIR", a->dir, "output directory (config.json + model.safetensors)")->required();
  cmd->add_flag("--force", a->force, "overwrite a checkpoint already in DIR");
  cmd->callback([a] {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (const char* name : {"config.json", "model.safetensors", "model.safetensors.index.json"}) {
      const fs::path existing = fs::path(a->dir) / name;
      check(a->force || !fs::exists(existing, ec),
            existing.string() + " exists: give --force to overwrite the checkpoint in " + a->dir);
    }
    Model m = Model::init(preset_config(a->preset), a->seed);
    m.save(a->dir);
    std::printf("wrote %s: preset %s, %.1f M parameters\n", a->dir.c_str(), a->preset.c_str(), double(m.n_params()) / 1e6);
  });
}

}  // namespace m3::cli

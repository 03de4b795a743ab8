// The m3 CLI's subcommands: each add_*_command registers one subcommand (its options and the
// callback that runs it) on the top-level app. One file per subcommand, src/tools/cmd_*.cpp.
#pragma once
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "m3/device.h"

namespace m3::cli {

// --device and --dtype of the commands that run a model.
struct DeviceOptions {
  std::string device = "cpu", dtype;
  DeviceSpec spec() const { return parse_device(device, dtype); }
};
void add_device_options(CLI::App* cmd, DeviceOptions& o);

void add_info_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_init_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_tokenize_commands(CLI::App& app);  // tokenize, detokenize, tokenizer train
void add_convert_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_grad_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_data_commands(CLI::App& app);  // data tokenize
void add_task_commands(CLI::App& app);  // task parity

}  // namespace m3::cli

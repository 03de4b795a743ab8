// m3: the command-line tool. Parses arguments, runs one subcommand, prints library errors.
#include <cstdio>
#include <exception>
#include <filesystem>
#include <new>
#include <nlohmann/json.hpp>

#include "m3/error.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"m3 — train and run Mamba-3 / Mamba-2 / Mamba-1 hybrid language models"};
  app.require_subcommand(1);
  m3::cli::add_info_command(app);
  m3::cli::add_logits_command(app);
  m3::cli::add_generate_command(app);
  m3::cli::add_init_command(app);
  m3::cli::add_bench_command(app);
  m3::cli::add_tokenize_commands(app);
  m3::cli::add_convert_command(app);
  m3::cli::add_serve_command(app);
  m3::cli::add_grad_command(app);
  m3::cli::add_train_command(app);
  m3::cli::add_eval_command(app);
  m3::cli::add_data_commands(app);
  m3::cli::add_task_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const m3::Error& e) {
    std::fprintf(stderr, "m3: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    // Sizes from input files are bounded before allocating (src/core/limits.h); what is left is
    // a machine without the memory the model itself needs.
    std::fprintf(stderr, "m3: error: out of memory\n");
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    std::fprintf(stderr, "m3: error: %s\n", e.what());  // names the path(s)
    return 1;
  } catch (const nlohmann::json::exception& e) {
    std::fprintf(stderr, "m3: error: JSON: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "m3: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}

#include "tools/commands.h"

namespace m3::cli {

void add_device_options(CLI::App* cmd, DeviceOptions& o) {
  cmd->add_option("--device", o.device, "where to run: cpu, cuda or cuda:N")->default_val("cpu");
  cmd->add_option("--dtype", o.dtype,
                  "matrix precision: f32, or bf16 with f32 accumulation (CUDA only; the default there). The SSM "
                  "parameters and the recurrent state are f32 in both");
}

}  // namespace m3::cli

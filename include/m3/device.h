// Where a model runs and in what precision: `--device cpu|cuda|cuda:N`, `--dtype f32|bf16`.
#pragma once
#include <string>

namespace m3 {

enum class DeviceKind { CPU, CUDA };
// Matrices on the device: F32, or BF16 with float32 accumulation. The SSM's own parameters,
// norms, biases and the recurrent state are float32 in both (the CPU backend runs F32 only).
enum class Precision { F32, BF16 };

struct DeviceSpec {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;
  Precision precision = Precision::F32;
  std::string str() const;  // "cpu", "cuda:0 bf16"
};

// "cpu", "cuda", "cuda:N" and "f32", "bf16" (or "" for the device's default: bf16 on CUDA,
// f32 on the CPU); m3::Error naming the bad value otherwise.
DeviceSpec parse_device(const std::string& device, const std::string& dtype);

}  // namespace m3

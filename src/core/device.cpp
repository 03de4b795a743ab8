#include "m3/device.h"

#include <charconv>

#include "m3/error.h"

namespace m3 {

std::string DeviceSpec::str() const {
  if (kind == DeviceKind::CPU) return "cpu";
  return "cuda:" + std::to_string(index) + (precision == Precision::BF16 ? " bf16" : " f32");
}

DeviceSpec parse_device(const std::string& device, const std::string& dtype) {
  DeviceSpec d;
  if (device == "cpu") {
    d.kind = DeviceKind::CPU;
  } else if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    d.kind = DeviceKind::CUDA;
    if (device.size() > 4) {
      const char* b = device.data() + 5;
      const char* e = device.data() + device.size();
      auto [p, ec] = std::from_chars(b, e, d.index);
      check(ec == std::errc() && p == e && b != e && d.index >= 0 && d.index < 1024,
            "--device '" + device + "': expected cuda:N with N a GPU index");
    }
  } else {
    throw Error("--device '" + device + "': expected cpu, cuda or cuda:N");
  }
  if (dtype.empty()) {
    d.precision = d.kind == DeviceKind::CUDA ? Precision::BF16 : Precision::F32;
  } else if (dtype == "f32") {
    d.precision = Precision::F32;
  } else if (dtype == "bf16") {
    check(d.kind == DeviceKind::CUDA, "--dtype bf16: the CPU backend computes in f32 only");
    d.precision = Precision::BF16;
  } else {
    throw Error("--dtype '" + dtype + "': expected f32 or bf16");
  }
  return d;
}

}  // namespace m3

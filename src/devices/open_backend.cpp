// Which backends this build has: the one place that names them all (model/ names none).
#include "cpu/backend.h"
#include "m3/error.h"
#include "model/backend.h"
#ifdef M3_HAVE_CUDA
#include "cuda/backend.h"
#endif

namespace m3 {

std::shared_ptr<Backend> open_backend(const DeviceSpec& spec) {
  switch (spec.kind) {
    case DeviceKind::CPU: return cpu::open_cpu_backend();
    case DeviceKind::CUDA:
#ifdef M3_HAVE_CUDA
      return cuda::open_cuda_backend(spec);
#else
      throw Error("--device " + spec.str() + ": this build of m3 has no CUDA backend (nvcc was not found when it was built)");
#endif
  }
  throw Error("unknown device kind");
}

}  // namespace m3

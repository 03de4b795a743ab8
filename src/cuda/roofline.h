// The CUDA device's ceilings for m3 bench: a cuBLASLt product on random data in the context's
// precision and a device-to-device copy of 2 GiB (bytes read + written), timed with events.
#pragma once
#include <memory>

#include "cuda/context.h"
#include "model/backend.h"

namespace m3::cuda {

std::unique_ptr<RooflineProbe> make_roofline_probe(Context& ctx, int64_t M, int64_t N, int64_t K);

}  // namespace m3::cuda

#!/usr/bin/env bash
# Prepares a run on a GPU machine that has the CUDA driver but none of the project's Debian
# packages: builds m3, the CUDA tests and the kernel benchmark m3_cuda_bench here (nvcc, no GPU
# needed) into build-gpu/, copies the shared libraries they need that are not the C/C++ runtime
# into .devlib/, packs both into .gpu/bundle.tar.xz (under the 64 MiB a device call carries), and
# copies the golden data into shared/golden/ (all git-ignored). scripts/gpu.sh unpacks the bundle
# there and runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DM3_WERROR=ON -DM3_BENCH=OFF -DM3_NATIVE=OFF >/dev/null
ninja -C build-gpu m3 m3_cuda_tests m3_cuda_bench
rm -rf .devlib && mkdir -p .devlib
for bin in build-gpu/m3 build-gpu/m3_cuda_tests build-gpu/m3_cuda_bench; do
  ldd "$bin" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*) ;;
    libcuda.so*|libcublas*.so*|libcudart*.so*) ;;  # the GPU machine's own CUDA 13
    *) cp -L "$lib" .devlib/ ;;
  esac
done
rm -rf .gpu && mkdir -p .gpu
tar -cJf .gpu/bundle.tar.xz build-gpu/m3 build-gpu/m3_cuda_tests build-gpu/m3_cuda_bench .devlib
rm -rf shared/golden && mkdir -p shared && cp -r ../shared/golden shared/golden
du -sh .gpu/bundle.tar.xz shared/golden

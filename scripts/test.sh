#!/usr/bin/env bash
# Sets up, builds and runs every test: the release build (warnings as errors; with the CUDA
# backend when nvcc is there — its tests, label `cuda`, report as skipped without a GPU), then the
# AddressSanitizer + UndefinedBehaviorSanitizer build (clang) with a short run of every fuzz harness.
# Usage: scripts/test.sh [--no-sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

echo "== release build + tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DM3_WERROR=ON >/dev/null
ninja -C build
(cd build && ctest --output-on-failure -j "$jobs")
# Second tokenizer oracle: the Hugging Face `tokenizers` package on fresh random strings. It is
# installed from the Python package registry when missing; the script says SKIP if it cannot be.
if command -v python3 >/dev/null; then
  python3 -c "import tokenizers" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check tokenizers >/dev/null 2>&1 || true
  python3 scripts/test_tokenizer_oracle.py --m3 build/m3
  # Chat templates: tests/data/chat_template/expected.json must still be what jinja2 renders; and
  # `m3 serve` through the official openai client. Each says SKIP when its package cannot be had.
  if python3 -c "import jinja2" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check jinja2 >/dev/null 2>&1; then
    python3 scripts/gen_chat_template_testdata.py --check
  else
    echo "chat template oracle: SKIP (no jinja2)"
  fi
  python3 -c "import openai" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check openai >/dev/null 2>&1 || true
  python3 scripts/test_openai_client.py --m3 build/m3
  # A short load test of `m3 serve` (bench/RESULTS.md has the 64-client, 60 s run).
  python3 scripts/load_test.py --m3 build/m3 --clients 16 --seconds 5
fi

if [ "${1:-}" != "--no-sanitize" ]; then
  echo "== ASan + UBSan build (clang, with the libFuzzer harnesses) + tests"
  # Host code only: the CUDA backend was compiled above, its tests need a GPU, and ASan does not
  # see device code (compute-sanitizer does, on the GPU machine: scripts/gpu.sh).
  # -O1 -g1: sanitizer reports keep function names and lines, for less build time than -O2 -g.
  # M3_FUZZ: one clang build gives both the sanitizer tests and the fuzz harnesses (the library's
  # coverage hooks are no-ops in m3 and m3_tests).
  cmake -S . -B build-asan -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DM3_WERROR=ON -DM3_FUZZ=ON -DM3_BENCH=OFF -DM3_CUDA=OFF >/dev/null
  ninja -C build-asan
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j "$jobs")
  echo "== fuzz: each harness 30 s, $jobs at a time (FUZZING.md)"
  scripts/fuzz.sh --build build-asan --jobs "$jobs" 30
fi
echo "all tests passed"

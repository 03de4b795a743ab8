#!/usr/bin/env python3
"""Encode throughput of the Hugging Face tokenizers library, single thread, on the same text as
bench/tokenizer_bench.cpp: /usr/include/c++/*/bits/*.h sorted by path, concatenated, cut to
8 MiB (M3_BENCH_TEXT_MB overrides). Prints MB/s (MiB/s of CPU time, like Google Benchmark's
bytes_per_second, so that other load on the machine does not skew the comparison) per tokenizer.

Usage: python3 scripts/bench_tokenizer_hf.py [tokenizer.json ...]
"""
import glob
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"  # before the library starts its thread pool
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_text():
    limit = int(float(os.environ.get("M3_BENCH_TEXT_MB", "8")) * (1 << 20))
    data = b""
    for p in sorted(glob.glob("/usr/include/c++/*/bits/*.h")):
        if len(data) >= limit:
            break
        with open(p, "rb") as f:
            data += f.read()
    # Cut on bytes like the C++ side; a character split by the cut becomes U+FFFD on both sides.
    return data[:limit].decode("utf-8", errors="replace")


def main():
    # Default: every tokenizer.json of the test data, as bench/tokenizer_bench.cpp runs them.
    names = sys.argv[1:] or [p for p in sorted(glob.glob(os.path.join(REPO, "tests", "data", "tokenizer", "*.json")))
                             if not p.endswith(".cases.json")]
    text = bench_text()
    size = len(text.encode("utf-8"))
    for path in names:
        tok = Tokenizer.from_file(path)
        tok.encode(text)  # warm the word cache, as the C++ benchmark's repeated runs do
        times = []
        for _ in range(5):
            t0 = time.process_time()
            ids = tok.encode(text).ids
            times.append(time.process_time() - t0)
        best = min(times)
        print(f"{os.path.basename(path)}: {size / (1 << 20) / best:.1f} MB/s (best of 5, {len(ids)} tokens, "
              f"{size / (1 << 20):.1f} MiB)")


if __name__ == "__main__":
    main()

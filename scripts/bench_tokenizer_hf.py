#!/usr/bin/env python3
"""Encode throughput of the Hugging Face tokenizers library, single thread, on the same text as
bench/tokenizer_bench.cpp: /usr/include/c++/*/bits/*.h sorted by path, concatenated, cut to
8 MiB (M3_BENCH_TEXT_MB overrides). Prints MB/s (MiB/s, like Google Benchmark) per tokenizer.

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
    names = sys.argv[1:] or [os.path.join(REPO, "tests", "data", "tokenizer", f"{n}.json")
                             for n in ("llama3", "neox", "sp_bpe", "gpt2")]
    text = bench_text()
    size = len(text.encode("utf-8"))
    for path in names:
        tok = Tokenizer.from_file(path)
        tok.encode(text)  # warm the word cache, as the C++ benchmark's repeated runs do
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            ids = tok.encode(text).ids
            times.append(time.perf_counter() - t0)
        best = min(times)
        print(f"{os.path.basename(path)}: {size / (1 << 20) / best:.1f} MB/s (best of 5, {len(ids)} tokens, "
              f"{size / (1 << 20):.1f} MiB)")


if __name__ == "__main__":
    main()

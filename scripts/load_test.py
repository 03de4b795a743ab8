#!/usr/bin/env python3
"""Bounded load test of `m3 serve`: N concurrent streaming clients on loopback for a fixed time
against a small model on the CPU (mamba3-tiny by default). Reports requests, failures, p50/p99
time to first token, generated tokens/s and the server's RSS after warm-up and at the end; exits 1
on any failed request or an RSS growth over 20%. Standard library only.

    scripts/load_test.py --m3 build/m3 --clients 64 --seconds 60
"""
import argparse
import http.client
import json
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time


def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def client(port, deadline, max_tokens, prompts, out, lock, seed):
    rng = random.Random(seed)
    while time.time() < deadline:
        body = json.dumps({"prompt": rng.choice(prompts), "max_tokens": max_tokens, "stream": True,
                           "temperature": 0.8, "seed": rng.randrange(1 << 30)})
        t0 = time.time()
        ttft, tokens, ok, why = None, 0, False, ""

        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                why = f"HTTP {resp.status}: {resp.read()[:200]!r}"
            else:
                while True:
                    line = resp.readline()
                    if not line:
                        break
                    if not line.startswith(b"data: "):
                        continue
                    if line.strip() == b"data: [DONE]":
                        ok = True
                        break
                    chunk = json.loads(line[6:])
                    if chunk["choices"]:
                        if ttft is None:
                            ttft = time.time() - t0
                        tokens += 1
            conn.close()
            if resp.status == 200 and not ok:
                why = "the stream ended without [DONE]"
        except (OSError, http.client.HTTPException, ValueError) as e:
            ok, why = False, f"{type(e).__name__}: {e}"
        with lock:
            out.append((ok, ttft, tokens, why))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m3", default="build/m3")
    ap.add_argument("--model", help="checkpoint directory (default: a fresh mamba3-tiny)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--slots", type=int, default=64)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = a.model
        if not model:
            model = str(pathlib.Path(tmp) / "tiny")
            subprocess.run([a.m3, "init", "--preset", "mamba3-tiny", model], check=True, capture_output=True)
        server = subprocess.Popen([a.m3, "serve", model, "--port", "0", "--slots", str(a.slots),
                                   "--max-queue", str(4 * a.clients), "--prefill-chunk", "64"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline().split("127.0.0.1:")[1].split()[0])
            shared = "You are a helpful assistant that answers in one short line. "
            prompts = [shared + q for q in ("What is a state space?", "Why constant memory?", "Hello!")] + \
                      ["def main():", "Once upon a time", "x" * 300]
            results, lock = [], threading.Lock()
            warm = time.time() + min(5.0, a.seconds / 4)
            deadline = time.time() + a.seconds
            threads = [threading.Thread(target=client, args=(port, deadline, a.max_tokens, prompts, results, lock, i))
                       for i in range(a.clients)]
            for t in threads:
                t.start()
            time.sleep(max(0.0, warm - time.time()))
            rss_warm = rss_kib(server.pid)
            for t in threads:
                t.join()
            rss_end = rss_kib(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=60)
    ok = [r for r in results if r[0]]
    failed = len(results) - len(ok)
    ttfts = sorted(r[1] for r in ok if r[1] is not None)
    tokens = sum(r[2] for r in ok)
    pct = lambda p: ttfts[min(len(ttfts) - 1, int(p * len(ttfts)))] * 1000 if ttfts else float("nan")
    print(f"clients {a.clients}, {a.seconds:.0f} s, max_tokens {a.max_tokens}, slots {a.slots}: "
          f"{len(results)} requests, {failed} failed; TTFT p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms; "
          f"{tokens / a.seconds:.1f} generated tokens/s; RSS {rss_warm / 1024:.1f} MiB after warm-up, "
          f"{rss_end / 1024:.1f} MiB at the end; server exit {code}")
    for r in [r for r in results if not r[0]][:5]:
        print("failed:", r[3])
    if failed or code != 0 or (rss_warm and rss_end > 1.2 * rss_warm):
        sys.exit(1)


if __name__ == "__main__":
    main()

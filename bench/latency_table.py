#!/usr/bin/env python3
"""The whole-model latency table of issue 10 from `m3 bench --json` files (bench/latency_table.sh).

Prints markdown: every run's figures, then the latency of prefill + decode of n tokens per model
and batch next to the reference's rows (--ref: the model rows of ../shared/tools/ref_bench.py,
bench_model.json, from the same GPU) and the seeds' H100 rows; writes latency.png (matplotlib,
when importable) to --out. The latency is prefill_s(n) + n x decode_ms_per_step / 1000: the
decode of n tokens is extrapolated from the mean step the run measured over its decode_tokens
steps (the reference's rows are computed the same way by ref_bench.py).
"""
import argparse
import glob
import json
import os
import sys

NS = [512, 1024, 4096, 16384]
# The seeds' table: H100-SXM, 1.5 B models, prefill + decode of n tokens, seconds.
SEEDS = {
    "Mamba-3 SISO (seeds, H100)": [4.39, 8.78, 35.11, 140.61],
    "Mamba-2 (seeds, H100)": [4.66, 9.32, 37.22, 149.02],
    "Mamba-3 MIMO (seeds, H100)": [4.74, 9.48, 37.85, 151.81],
    "Llama-3.2-1B vLLM (seeds, H100)": [4.45, 9.60, 58.64, 976.50],
}


def name_of(r):
    return r.get("preset") or os.path.basename(r["model"].rstrip("/"))


def latency_s(r, n):
    return r["prefill_s"] + n * r["decode_ms_per_step"] / 1000.0


def load(source):
    """The runs of a folder of m3 bench --json files, or of one JSON list of them (--save's file)."""
    runs = []
    if os.path.isfile(source):
        with open(source) as f:
            found = [(source, r) for r in json.load(f)]
    else:
        found = []
        for path in sorted(glob.glob(os.path.join(source, "*.json"))):
            with open(path) as f:
                found.append((path, json.load(f)))
    for path, r in found:
        missing = [k for k in ("model", "batch", "prompt_len", "prefill_s", "decode_ms_per_step") if k not in r]
        if missing:
            sys.exit(f"latency_table.py: {path} lacks {', '.join(missing)}")
        runs.append(r)
    if not runs:
        sys.exit(f"latency_table.py: no runs in {source}")
    runs.sort(key=lambda r: (name_of(r), r["batch"], r["prompt_len"]))
    return runs


def load_ref(paths):
    """The reference's whole-model rows: {batch: {n: latency_s}} and the rows themselves."""
    rows = []
    for path in paths or []:
        with open(path) as f:
            rows += [r for r in json.load(f) if r.get("op", "").startswith("ref_model")]
    by_batch = {}
    for r in rows:
        by_batch.setdefault(r["B"], {})[r["n"]] = r["latency_prefill_plus_decode_n_s"]
    return rows, by_batch


def ref_label(batch):
    return f"reference MambaLMHeadModel (mamba_ssm), batch {batch}"


def print_tables(runs, ref_rows, ref_by_batch):
    devices = sorted({r.get("device", "?") for r in runs})
    print(f"Device: {'; '.join(devices)}\n")
    print("| model | batch | n | prefill s | prefill tok/s | decode ms/step | decode tok/s | state/seq MB "
          "| prefill + decode of n tokens, s (extrapolated) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        n = r["prompt_len"]
        print(f"| {name_of(r)} | {r['batch']} | {n} | {r['prefill_s']:.3f} | {r.get('prefill_tok_s', 0):,.0f} "
              f"| {r['decode_ms_per_step']:.3f} | {r.get('decode_tok_s', 0):,.0f} "
              f"| {r.get('state_bytes_per_sequence', 0) / 1e6:.1f} | {latency_s(r, n):.2f} |")
    print("\nPrefill + decode of n tokens, seconds (ours: prefill measured at n, decode of n tokens "
          f"extrapolated from the mean of {sorted({r.get('decode_tokens', 0) for r in runs})} measured steps):\n")
    print("| model | " + " | ".join(f"n = {n}" for n in NS) + " |")
    print("|---|" + "---|" * len(NS))
    for label, by_n in series(runs):
        print(f"| {label} | " + " | ".join(f"{by_n[n]:.2f}" if n in by_n else "–" for n in NS) + " |")
    for batch, by_n in sorted(ref_by_batch.items()):
        print(f"| {ref_label(batch)} | " + " | ".join(f"{by_n[n]:.2f}" if n in by_n else "–" for n in NS) + " |")
    for label, v in SEEDS.items():
        print(f"| {label} | " + " | ".join(f"{x:.2f}" for x in v) + " |")
    if ref_rows:
        print("\nThe reference's runs (same GPU):\n")
        print("| batch | n | prefill s | prefill tok/s | decode ms/step | prefill + decode of n tokens, s |")
        print("|---|---|---|---|---|---|")
        for r in sorted(ref_rows, key=lambda r: (r["B"], r["n"])):
            print(f"| {r['B']} | {r['n']} | {r['prefill_s']:.3f} | {r['prefill_tok_s']:,.0f} | {r['decode_step_ms']:.3f} "
                  f"| {r['latency_prefill_plus_decode_n_s']:.2f} |")


def series(runs):
    """(label, {n: latency}) for each model and batch, at the seeds' n."""
    out = {}
    for r in runs:
        if r["prompt_len"] in NS:
            out.setdefault(f"{name_of(r)}, batch {r['batch']}", {})[r["prompt_len"]] = latency_s(r, r["prompt_len"])
    return sorted(out.items())


def plot(runs, ref_by_batch, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"\nmatplotlib is not importable: no plot written ({path})")
        return
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # more series than tab10's colours
    for label, by_n in series(runs):
        ns = sorted(by_n)
        ax.plot(ns, [by_n[n] for n in ns], marker="o", label=label + " (ours)")
    for batch, by_n in sorted(ref_by_batch.items()):
        ns = [n for n in NS if n in by_n]
        ax.plot(ns, [by_n[n] for n in ns], linestyle="-.", marker="s", label=ref_label(batch) + ", same GPU")
    for label, v in SEEDS.items():
        ax.plot(NS, v, linestyle="--", marker="x", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(NS)
    ax.set_xticklabels([str(n) for n in NS])
    ax.set_xlabel("n (prompt tokens, then n decoded tokens)")
    ax.set_ylabel("prefill + decode of n tokens, s")
    devices = "; ".join(sorted({r.get("device", "?") for r in runs}))
    ax.set_title(f"Prefill + decode latency (ours: decode extrapolated from measured steps)\n{devices}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"\nplot: {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", help="folder of m3 bench --json files, or a JSON list of them (--save)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for latency.png (default $OUT or .)")
    ap.add_argument("--ref", nargs="*", help="the reference's bench_model.json files (ref_bench.py model)")
    ap.add_argument("--save", help="also write every run into this one JSON list (one file to copy back)")
    a = ap.parse_args()
    runs = load(a.runs)
    if a.save:
        os.makedirs(os.path.dirname(os.path.abspath(a.save)), exist_ok=True)
        with open(a.save, "w") as f:
            json.dump(runs, f, indent=1)
    ref_rows, ref_by_batch = load_ref(a.ref)
    print_tables(runs, ref_rows, ref_by_batch)
    os.makedirs(a.out, exist_ok=True)
    plot(runs, ref_by_batch, os.path.join(a.out, "latency.png"))


if __name__ == "__main__":
    main()

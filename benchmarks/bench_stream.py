"""Streaming at scale: N = 1,000,000 samples, D = 1024, features generated chunk by chunk (never held
whole), scored with bounded memory; then the same data scored in memory, for agreement.

    python benchmarks/bench_stream.py [--N 1000000] [--D 1024] [--chunk 16384] [--shift 1e4] [--skip-in-memory]

Prints the peak resident memory of the streaming run (measured in a child process, so that the in-memory
comparison's 8 GB does not count) and the relative difference of the two scores (float64).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

import emms_ext


def chunks(N: int, D: int, chunk: int, shift: float, dtype=torch.float64):
    """Deterministic features: chunk i from its own seed, class-dependent means plus a large offset."""
    centers = torch.randn(100, D, generator=torch.Generator().manual_seed(12345), dtype=dtype)
    for i, start in enumerate(range(0, N, chunk)):
        n = min(chunk, N - start)
        g = torch.Generator().manual_seed(i)
        y = labels_for(start, n)
        yield torch.randn(n, D, generator=g, dtype=dtype) + 0.3 * centers[y] + shift


def labels_for(start: int, n: int) -> torch.Tensor:
    return (torch.arange(start, start + n) * 7919) % 100


def task(N: int):
    table = torch.randn(100, 384, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return table, labels_for(0, N)


def run(mode: str, N: int, D: int, chunk: int, shift: float) -> dict:
    labels = task(N)
    start = time.perf_counter()
    if mode == "stream":
        res = emms_ext.emms_score(chunks(N, D, chunk, shift), labels, precision="float64")
    else:
        X = torch.empty(N, D, dtype=torch.float64)  # filled in place: one copy of the data, not two
        for i, c in enumerate(chunks(N, D, chunk, shift)):
            X[i * chunk : i * chunk + c.shape[0]] = c
        res = emms_ext.emms_score(X, labels, precision="float64")  # its own chunking (16384 rows)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"score": res.score, "seconds": seconds, "peak_rss_mb": peak_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--N", type=int, default=1_000_000)
    ap.add_argument("--D", type=int, default=1024)
    ap.add_argument("--chunk", type=int, default=10000)
    ap.add_argument("--shift", type=float, default=1e4)
    ap.add_argument("--skip-in-memory", action="store_true")
    ap.add_argument("--child", choices=["stream", "memory"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run(args.child, args.N, args.D, args.chunk, args.shift)))
        return
    base = [
        sys.executable,
        __file__,
        "--N",
        str(args.N),
        "--D",
        str(args.D),
        "--chunk",
        str(args.chunk),
        "--shift",
        str(args.shift),
    ]
    out = {}
    for mode in ["stream"] + ([] if args.skip_in_memory else ["memory"]):
        proc = subprocess.run(base + ["--child", mode], capture_output=True, text=True, check=True)
        out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"# bench_stream: N={args.N}, D={args.D}, chunk={args.chunk}, feature offset {args.shift:g}, float64")
    print("| run | seconds | peak RSS (MB) | score |")
    print("|---|---:|---:|---:|")
    for mode, r in out.items():
        print(f"| {mode} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['score']:.12f} |")
    if "memory" in out:
        rel = abs(out["stream"]["score"] - out["memory"]["score"]) / abs(out["memory"]["score"])
        print(f"\nrelative difference stream vs in-memory: {rel:.2e} (target <= 1e-10)")
        assert rel <= 1e-10, rel
    assert out["stream"]["peak_rss_mb"] <= 2048, out["stream"]


if __name__ == "__main__":
    main()

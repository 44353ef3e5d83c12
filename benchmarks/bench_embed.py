"""Time F-label embedding: 1,000 class prompts with every default (offline) embedder.

A script, not a test. It checks first (K >= 2 distinct models load with no network; a second pass is
served entirely by the cache and returns the same vectors), then times, and prints a markdown table.
The issue's bar: all default embedders together under 60 s for 1,000 prompts on the 2-core CPU.

    python benchmarks/bench_embed.py [--n 1000] [--limit 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub request here would be a bug: make it fail loudly
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

from emms_ext.embed import EmbeddingCache, classification_labels, default_embedders
from emms_ext.embed.models.locate import minilm_l6_dir


def class_names(n: int, seed: int = 0) -> list[str]:
    """n distinct two-word class names from the MiniLM vocabulary (deterministic; no data set needed)."""
    words = [w for w in (minilm_l6_dir() / "vocab.txt").read_text().split() if w.isalpha() and len(w) >= 4]
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < n:
        names.add(f"{rng.choice(words)}_{rng.choice(words)}")
    return sorted(names)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="number of class prompts")
    ap.add_argument("--limit", type=float, default=60.0, help="seconds allowed for all embedders together")
    args = ap.parse_args()

    t0 = time.perf_counter()
    embs = default_embedders(progress=False)
    load_s = time.perf_counter() - t0
    assert len(embs) >= 2 and len({e.name for e in embs}) == len(embs), embs
    names = class_names(args.n)
    prompts = [f"a photo of a {n.replace('_', ' ')}." for n in names]

    rows, total = [], 0.0
    for e in embs:
        e.encode(prompts[:8])  # warm-up: first-call allocations are not the steady state
        t = time.perf_counter()
        v = e.encode(prompts)
        dt = time.perf_counter() - t
        total += dt
        assert v.shape == (args.n, e.dim) and torch.isfinite(v).all()
        rows.append((e.name, e.dim, dt))

    with tempfile.TemporaryDirectory() as d:  # end to end through the adapter, then all cache hits
        cache = EmbeddingCache(d)
        t = time.perf_counter()
        first = classification_labels(list(range(args.n)), names, embs, cache=cache)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        second = classification_labels(list(range(args.n)), names, embs, cache=cache)
        warm = time.perf_counter() - t
        assert cache.last_hits == args.n and cache.last_misses == 0
        for a, b in zip(first.table, second.table):
            assert torch.allclose(a, b, atol=1e-6, rtol=0)

    print(
        f"# F-label embedding, {args.n} class prompts ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__})\n"
    )
    print("| embedder | dim | seconds | prompts/s |")
    print("|---|---:|---:|---:|")
    for name, dim, dt in rows:
        print(f"| {name} | {dim} | {dt:.2f} | {args.n / dt:.0f} |")
    print(f"| **all {len(embs)} embedders** | | **{total:.2f}** | {args.n / total:.0f} |\n")
    print(
        f"model loading: {load_s:.2f} s; classification_labels through the cache: cold {cold:.2f} s, "
        f"warm (all hits) {warm:.3f} s"
    )
    ok = total < args.limit
    print(
        f"{'PASS' if ok else 'FAIL'}: {total:.2f} s {'<' if ok else '>='} {args.limit:.0f} s for all default embedders"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

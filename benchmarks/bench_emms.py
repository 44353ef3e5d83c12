"""CPU speed of emms_score against the released algorithm (numpy) and one float32 Gram of the same size.

A script, not a test: it first checks that the scores agree, then times, then prints a markdown table of
ratios measured within this one run. Run it with `make bench` (which unsets OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE so that numpy's OpenBLAS picks its own best kernel for this CPU).

    python benchmarks/bench_emms.py [--quick] [--repeat 3]

The zoo rows compare emms_scores on M equal-width models with emms_score looped over them and with one
Gram per model; the peak memory beyond the features is measured in a child process (its VmHWM, reset
after the features are made, the workspace released). Timed calls after the first reuse the workspace's
buffers (docs/design.md §6), as repeated calls do; the "cold" row releases it before each call.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import numpy as np
import torch

import emms_ext
from emms_ext.ops.reference import released_emms_numpy


def timed(fn, repeat: int) -> float:
    """Best wall-clock of `repeat` runs after one warm-up (the minimum is the least noisy estimator)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def problem(N: int, D: int, L: int, K: int, C: int | None, seed: int = 0):
    """float32 features with a class structure, and F-labels: class embeddings (C classes) or free text."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C or 10, (N,), generator=g)
    centers = torch.randn(C or 10, D, generator=g)
    X = (torch.randn(N, D, generator=g) + 0.5 * centers[y]).float()
    if C:
        table = torch.randn(C, L, K, generator=g)
        return X, table[y], (table, y)
    return X, torch.randn(N, L, K, generator=g), None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller headline problem and sweep (smoke run)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--zoo-memory", help=argparse.SUPPRESS)  # child process of zoo_peak_memory
    args = ap.parse_args()
    if args.zoo_memory:
        return zoo_memory_child(json.loads(args.zoo_memory))
    torch.manual_seed(0)
    print(
        f"# emms_ext {emms_ext.__version__} bench_emms on {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}"
    )

    N, D, L, K, C = (1000, 512, 256, 3, 100) if args.quick else (5000, 2048, 1024, 3, 100)
    X, Z, classes = problem(N, D, L, K, C)
    Xn, Zn = X.numpy(), Z.numpy()

    # 1. Correctness first: reference mode reproduces the released code on the same float32 arrays, and
    #    both agree with the released code run in float64.
    released32, t32 = released_emms_numpy(Xn, Zn)
    released64, t64 = released_emms_numpy(Xn.astype(np.float64), Zn.astype(np.float64))
    ours_ref = emms_ext.emms_score(X, Z, "reference")
    ours_ref64 = emms_ext.emms_score(X.double(), Z.double(), "reference")
    exact = emms_ext.emms_score(X, Z, "exact")
    exact_tab = emms_ext.emms_score(X, classes, "exact")
    rel = lambda a, b: abs(a - b) / abs(b)
    checks = {
        "reference f32 vs released f64": rel(ours_ref.score, released64),
        "released f32 vs released f64": rel(released32, released64),
        "reference f64 vs released f64": rel(ours_ref64.score, released64),
        "exact dense vs (table, indices)": rel(exact.score, exact_tab.score),
    }
    for name, err in checks.items():
        print(f"check {name:34s} rel err {err:.2e}")
    assert checks["reference f64 vs released f64"] < 1e-8
    assert checks["reference f32 vs released f64"] <= 2 * checks["released f32 vs released f64"] + 1e-5
    assert checks["exact dense vs (table, indices)"] < 1e-5
    assert np.allclose(ours_ref64.t.numpy(), t64, atol=1e-8)

    # 2. Headline timing.
    gram = timed(lambda: X.T @ X, args.repeat)
    syrk = timed(lambda: Xn.T @ Xn, args.repeat)  # numpy's OpenBLAS sees a' a and calls SYRK
    rows = [
        ("one float32 Gram X'X (the floor)", gram),
        ("numpy X'X (OpenBLAS SYRK)", syrk),
        ("released algorithm (numpy, float32)", timed(lambda: released_emms_numpy(Xn, Zn), 1)),
        ("emms_score reference, dense Z [N,L,K]", timed(lambda: emms_ext.emms_score(X, Z, "reference"), args.repeat)),
        ("emms_score exact, dense Z [N,L,K]", timed(lambda: emms_ext.emms_score(X, Z, "exact"), args.repeat)),
        ("emms_score exact, (table, indices)", timed(lambda: emms_ext.emms_score(X, classes, "exact"), args.repeat)),
        (
            "  the same, workspace released before each call (cold)",
            timed(lambda: (emms_ext.release_workspace(), emms_ext.emms_score(X, classes, "exact")), args.repeat),
        ),
        ("emms_score alternating, dense Z", timed(lambda: emms_ext.emms_score(X, Z, "alternating"), args.repeat)),
        ("emms_score gcv, (table, indices)", timed(lambda: emms_ext.emms_score(X, classes, "gcv"), 1)),
    ]
    released = rows[2][1]
    print(f"\n## Headline: N={N}, D={D}, L={L}, K={K}, C={C} classes, float32 inputs\n")
    print("| what | seconds | released / this | this / Gram | this / SYRK |")
    print("|---|---:|---:|---:|---:|")
    for name, sec in rows:
        print(f"| {name} | {sec:.3f} | {released / sec:.1f}x | {sec / gram:.2f}x | {sec / syrk:.2f}x |")

    # 3. Scaling sweep (the released code only where it runs in reasonable time).
    Ns = (1000, 5000) if args.quick else (1000, 5000, 20000)
    Dsweep = (256, 1024) if args.quick else (256, 1024, 2048)
    print(f"\n## Sweep: L={L // 4}, K={K}, C={C}, float32; exact mode, dense Z\n")
    print("| N | D | Gram s | emms_score s | emms / Gram | released s | released / emms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in Ns:
        for d in Dsweep:
            Xs, Zs, _ = problem(n, d, L // 4, K, C, seed=n + d)
            g = timed(lambda Xs=Xs: Xs.T @ Xs, args.repeat)
            e = timed(lambda Xs=Xs, Zs=Zs: emms_ext.emms_score(Xs, Zs), args.repeat)
            if n * d <= 5000 * 2048:
                r = timed(lambda Xs=Xs, Zs=Zs: released_emms_numpy(Xs.numpy(), Zs.numpy()), 1)
                rs, ratio = f"{r:.3f}", f"{r / e:.1f}x"
            else:
                rs, ratio = "-", "-"
            print(f"| {n} | {d} | {g:.3f} | {e:.3f} | {e / g:.2f}x | {rs} | {ratio} |")

    # 4. A zoo: one label preparation and one fused solve for every model.
    M = 8 if args.quick else 16
    zoo = {f"m{i}": problem(2000, 512, 0, K, None, seed=100 + i)[0] for i in range(M)}
    _, Zz, cz = problem(2000, 8, 256, K, C, seed=7)
    t_zoo = timed(lambda: emms_ext.emms_scores(zoo, cz), 1)
    t_loop = timed(lambda: [released_emms_numpy(x.numpy(), Zz.numpy()) for x in zoo.values()], 1)
    print(f"\n## Zoo: M={M} models, N=2000, D=512, L=256, K={K}, C={C}\n")
    print(f"emms_scores {t_zoo:.3f} s, released per-model loop {t_loop:.3f} s: {t_loop / t_zoo:.1f}x")

    # 5. Batching must beat the per-model loop, in time and memory.
    shapes = [(8, 1000, 256, 20, 96, 2), (64, 1000, 256, 20, 96, 2)] if args.quick else []
    if not args.quick:
        shapes = [(16, 5000, 768, 100, 384, 2), (64, 5000, 768, 100, 384, 2)]
        shapes += [(100, 2000, 128, 20, 64, 2), (1000, 2000, 128, 20, 64, 2)]
    print("\n## Zoo batching: per model, emms_scores vs emms_score looped vs one Gram (float32, class labels)\n")
    print(
        "| M | N | D | C | L | K | zoo ms/model | loop ms/model | Gram ms | zoo / loop | zoo / Gram | "
        "peak beyond features |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for shape in shapes:
        m, n, d, c, lw, k = shape
        t_z, t_l, t_g = zoo_times(shape, args.repeat)
        peak, feats = zoo_peak_memory(shape)
        print(
            f"| {m} | {n} | {d} | {c} | {lw} | {k} | {1e3 * t_z:.2f} | {1e3 * t_l:.2f} | {1e3 * t_g:.2f} | "
            f"{t_z / t_l:.2f}x | {t_z / t_g:.2f}x | {peak / 2**20:.0f} MiB = {100 * peak / feats:.0f}% of "
            f"{feats / 2**20:.0f} MiB |"
        )


def zoo_times(shape, repeat: int) -> tuple[float, float, float]:
    """Seconds per model of emms_scores on the zoo and of emms_score looped over it, and of one Gram."""
    xs, labels = zoo_problem(*shape)
    M = shape[0]
    t_zoo = timed(lambda: emms_ext.emms_scores(xs, labels), max(1, min(repeat, 2))) / M
    t_loop = timed(lambda: [emms_ext.emms_score(x, labels) for x in xs.values()], 1) / M
    x0 = next(iter(xs.values()))
    return t_zoo, t_loop, timed(lambda: x0.T @ x0, repeat)


def zoo_problem(M: int, N: int, D: int, C: int, L: int, K: int):
    """M float32 models [N, D] (made one by one: no float64 temporary the size of the zoo) and class labels."""
    g = torch.Generator().manual_seed(M + N + D)
    y = torch.randint(0, C, (N,), generator=g)
    xs = {f"m{i}": torch.randn(N, D, generator=g, dtype=torch.float32) for i in range(M)}
    for x in xs.values():
        x[:, : min(D, C)] += 2.0 * torch.nn.functional.one_hot(y, C)[:, :D].float()
    return xs, (torch.randn(C, L, K, generator=g), y)


def _rss(field: str) -> int:
    """Bytes of /proc/self/status's field (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def zoo_peak_memory(shape) -> tuple[int, int]:
    """(peak bytes beyond the features while emms_scores runs, the features' bytes), in a child process."""
    out = subprocess.run(
        [sys.executable, __file__, "--zoo-memory", json.dumps(shape)], capture_output=True, text=True, check=True
    )
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def zoo_memory_child(shape) -> None:
    xs, labels = zoo_problem(*shape)
    emms_ext.emms_scores({"warm": next(iter(xs.values()))}, labels)  # lazy imports, op registration
    emms_ext.release_workspace()  # the zoo's own buffers count in its peak
    base = _rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")
    emms_ext.emms_scores(xs, labels)
    feats = sum(x.numel() * x.element_size() for x in xs.values())
    print(json.dumps([_rss("VmHWM") - base, feats]))


if __name__ == "__main__":
    main()

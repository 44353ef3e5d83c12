"""CPU speed of emms_score against the released algorithm (numpy) and one float32 Gram of the same size.

A script, not a test: it first checks that the scores agree, then times, then prints a markdown table of
ratios measured within this one run. Run it with `make bench` (which unsets OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE so that numpy's OpenBLAS picks its own best kernel for this CPU).

    python benchmarks/bench_emms.py [--quick] [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform
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
    args = ap.parse_args()
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
    rows = [
        ("one float32 Gram X'X (the floor)", gram),
        ("released algorithm (numpy, float32)", timed(lambda: released_emms_numpy(Xn, Zn), 1)),
        ("emms_score reference, dense Z [N,L,K]", timed(lambda: emms_ext.emms_score(X, Z, "reference"), args.repeat)),
        ("emms_score exact, dense Z [N,L,K]", timed(lambda: emms_ext.emms_score(X, Z, "exact"), args.repeat)),
        ("emms_score exact, (table, indices)", timed(lambda: emms_ext.emms_score(X, classes, "exact"), args.repeat)),
        ("emms_score alternating, dense Z", timed(lambda: emms_ext.emms_score(X, Z, "alternating"), args.repeat)),
    ]
    released = rows[1][1]
    print(f"\n## Headline: N={N}, D={D}, L={L}, K={K}, C={C} classes, float32 inputs\n")
    print("| what | seconds | released / this | this / Gram |")
    print("|---|---:|---:|---:|")
    for name, sec in rows:
        print(f"| {name} | {sec:.3f} | {released / sec:.1f}x | {sec / gram:.2f}x |")

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


if __name__ == "__main__":
    main()

"""CPU scaling: EMMS against the released algorithm (numpy), a naive torch port of it, LogME and one Gram,
over N, D, the number of classes C and a free-text case; ratios within one run, peak memory, a log-log plot.

    python benchmarks/bench_speed.py [--quick] [--plot docs/bench_speed.png]

The released code and the torch port are only run where they finish in reasonable time (N*D <= 2e7);
peak memory is measured for emms_score alone in a child process per (N, D).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

import emms_ext
from emms_ext.baselines import logme
from emms_ext.ops.reference import released_emms_numpy, released_emms_torch

L, K = 256, 3


def problem(N: int, D: int, C: int | None, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    classes = torch.randint(0, C or 10, (N,), generator=g)
    X = torch.randn(N, D, generator=g) + 0.3 * torch.randn(C or 10, D, generator=g)[classes]
    if C:
        table = torch.randn(C, L, K, generator=g)
        return X, table[classes], classes
    return X, torch.randn(N, L, K, generator=g), classes


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def child_peak(N: int, D: int) -> float:
    """Peak RSS (MB) of a fresh process that builds the problem and runs emms_score once."""
    code = (
        f"import sys; sys.path.insert(0, {repr(sys.path[0])}); import resource, warnings; "
        f"warnings.simplefilter('ignore'); from bench_speed import problem; import emms_ext; "
        f"X, Z, _ = problem({N}, {D}, 100); base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        f"emms_ext.emms_score(X, Z); print(base / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--plot", default=None, help="write the log-log plot here (PNG)")
    ap.add_argument("--json", default=None, help="write the raw rows here")
    args = ap.parse_args()
    warnings.simplefilter("ignore", emms_ext.EMMSDegeneracyWarning)
    Ns = (1000, 5000) if args.quick else (1000, 5000, 20000, 100000)
    Ds = (256, 1024) if args.quick else (256, 1024, 2048)
    print(
        f"# bench_speed: torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, "
        f"L={L}, K={K}, float32 features, C=100 classes unless noted"
    )
    rows = []
    print(
        "\n| N | D | Gram s | emms_score s | emms (table, idx) s | LogME s | torch port s | released s | "
        "released / emms | peak RSS MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for N in Ns:
        for D in Ds:
            X, Z, classes = problem(N, D, 100)
            uniq, inv = torch.unique(classes, return_inverse=True)
            tab = torch.stack([Z[(classes == c).nonzero()[0, 0]] for c in uniq])
            g = timed(lambda X=X: X.T @ X)
            e = timed(lambda X=X, Z=Z: emms_ext.emms_score(X, Z))
            et = timed(lambda X=X, tab=tab, inv=inv: emms_ext.emms_score(X, (tab, inv)))
            lg = timed(lambda X=X, classes=classes: logme(X, classes))
            small = N * D <= 2e7
            tp = timed(lambda X=X, Z=Z: released_emms_torch(X, Z)) if small else float("nan")
            rel = timed(lambda X=X, Z=Z: released_emms_numpy(X.numpy(), Z.numpy())) if small else float("nan")
            peak = child_peak(N, D)
            row = dict(N=N, D=D, gram=g, emms=e, emms_table=et, logme=lg, torch_port=tp, released=rel, peak_mb=peak)
            rows.append(row)
            f = lambda v: "-" if v != v else f"{v:.3f}"
            print(
                f"| {N} | {D} | {g:.3f} | {e:.3f} | {et:.3f} | {lg:.3f} | {f(tp)} | {f(rel)} | "
                f"{'-' if rel != rel else f'{rel / e:.1f}x'} | {peak:.0f} |",
                flush=True,
            )
    N, D = (5000, 1024) if args.quick else (20000, 1024)
    print(f"\nClasses and free text at N={N}, D={D}:\n")
    print("| labels | emms_score s | LogME s |")
    print("|---|---:|---:|")
    for C in (10, 100, 1000, None):
        X, Z, classes = problem(N, D, C)
        e = timed(lambda X=X, Z=Z: emms_ext.emms_score(X, Z))
        lg = timed(lambda X=X, classes=classes: logme(X, classes)) if C else float("nan")
        print(
            f"| {'C=' + str(C) if C else 'free text (N distinct rows)'} | {e:.3f} | "
            f"{'-' if lg != lg else f'{lg:.3f}'} |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(Ds), figsize=(4 * len(Ds), 3.4), sharey=True)
        for ax, D in zip(np.atleast_1d(axes), Ds):
            sel = [r for r in rows if r["D"] == D]
            n = [r["N"] for r in sel]
            for key, label in (
                ("gram", "one Gram X'X"),
                ("emms", "emms_score"),
                ("logme", "LogME"),
                ("torch_port", "released, torch port"),
                ("released", "released (numpy)"),
            ):
                ax.loglog(n, [r[key] for r in sel], marker="o", label=label)
            ax.set_title(f"D = {D}")
            ax.set_xlabel("N samples")
        np.atleast_1d(axes)[0].set_ylabel("seconds (2-core CPU)")
        np.atleast_1d(axes)[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

"""GPU benchmark of a whole zoo: how close the pipeline's GEMMs run to the GPU's measured GEMM peak, what
the fused K x K solve costs inside the pipeline, and the batch against a per-model loop. A script, not a
test: it checks the scores first (against float64 on the CPU), then times, and writes its markdown table row
by row (each row flushed to --out as soon as it is measured, so a run cut short keeps what it measured).

    python benchmarks/bench_gpu.py [--models 64,256] [--dims 768,2048] [--N 20000] [--out FILE]
    python benchmarks/bench_gpu.py --device cpu --tiny --out FILE      # the same script, small, on the CPU

What is measured (all ratios within this one run):
  * GEMM share: the pipeline's matrix-product flops (counted by torch.utils.flop_counter while it runs: the
    Gram's lower blocks only, see core/linalg.py symmetric_gram, plus the label cross-products) per second
    of the whole emms_scores call, against the measured rate of one plain GEMM of the same shape [N, D]' [N, D]
    and precision (float32, or TF32 tensor cores).
  * The fused solve (emms::wlsr_simplex) timed inside the pipeline by the profiler at K = 3, 8 and 32.
  * The per-model loop: emms_score on each model in turn, same precision and label form, per model.
The zoo's M models reference a pool of distinct feature matrices, as many as a quarter of the free plus
cached device memory holds (at most 16): the work per model is real; only the scores repeat.
Targets (each printed PASS / FAIL): float64 scores on the device equal the CPU's to 1e-9; the pipeline's
GEMMs at >= 50% of the GEMM peak (largest D, TF32, class labels); the fused solve <= 5% of the pipeline at
K = 3 and 8; the batch no slower per model than the loop, for both label forms.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import emms_ext

DEVICE = "cuda"  # --device cpu runs the same script, small, as a smoke test without a GPU
MAX_POOL = 16


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def best_time(fn, repeat: int = 2) -> float:
    """Best wall-clock of `repeat` runs after one warm-up, device synchronized."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def available_bytes() -> int:
    """Free device memory plus what torch's caching allocator holds but does not use."""
    if DEVICE != "cuda":
        return 8 << 30
    free, _ = torch.cuda.mem_get_info()
    return free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()


def make_pool(N: int, D: int, classes: torch.Tensor, size: int, seed: int) -> list[torch.Tensor]:
    """``size`` float32 feature matrices [N, D] on the device, with a class structure of varying strength."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    centers = torch.randn(int(classes.max()) + 1, D, device=DEVICE, generator=g)
    means = centers[classes.to(DEVICE)]
    return [torch.randn(N, D, device=DEVICE, generator=g) + (0.2 + 0.05 * i) * means for i in range(size)]


def labels_of(kind: str, classes: torch.Tensor, L: int, K: int, seed: int):
    """Class labels (table [C, L, K], indices [N]) or dense free-text-like labels [N, L, K]."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(int(classes.max()) + 1, L, K, generator=g)
    return (
        (table, classes) if kind == "classes" else table[classes] + 0.3 * torch.randn(len(classes), L, K, generator=g)
    )


def gemm_peak(N: int, D: int, precision: str) -> float:
    """FLOP/s of one x' x GEMM for x [N, D] float32 (TF32 tensor cores if asked), best of 5."""
    x = torch.randn(N, D, device=DEVICE, generator=torch.Generator(device=DEVICE).manual_seed(1))
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        t = best_time(lambda: x.T @ x, repeat=5)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return 2.0 * N * D * D / t


def counted_flops(fn) -> float:
    """Matrix-product flops torch runs inside fn (one run)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    sync()
    return float(counter.get_total_flops())


def solve_time_inside(fn) -> tuple[float, float]:
    """(seconds of emms::wlsr_simplex inside fn, as the profiler attributes them: device time on CUDA, CPU
    time on the CPU; seconds of the whole fn under the profiler)."""
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if DEVICE == "cuda" else [])
    fn()
    sync()
    start = time.perf_counter()
    with torch.profiler.profile(activities=acts) as prof:
        fn()
        sync()
    total = time.perf_counter() - start
    us = 0.0
    for e in prof.key_averages():
        if e.key == "emms::wlsr_simplex":
            us += (
                (getattr(e, "device_time_total", 0.0) or getattr(e, "cuda_time_total", 0.0))
                if DEVICE == "cuda"
                else e.cpu_time_total
            )
    return (us * 1e-6 if us > 0 else float("nan")), total  # NaN: the profiler saw no solve (a target then fails)


class Table:
    """Markdown written row by row: printed and appended (flushed) to the output file at once."""

    def __init__(self, path: str | None):
        self.file = open(path, "w") if path else None  # noqa: SIM115 (kept open for the run, closed in close)
        self.targets: list[tuple[str, bool]] = []

    def emit(self, line: str = "") -> None:
        print(line, flush=True)
        if self.file:
            self.file.write(line + "\n")
            self.file.flush()

    def target(self, name: str, measured: str, goal: str, ok: bool) -> None:
        self.targets.append((name, ok))
        self.emit(f"TARGET {name}: {measured} (goal {goal}) {'PASS' if ok else 'FAIL'}")

    def close(self) -> None:
        if self.file:
            self.file.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="64,256", help="zoo sizes M (comma-separated)")
    ap.add_argument("--dims", default="768,2048", help="feature widths D (comma-separated)")
    ap.add_argument("--N", type=int, default=20000)
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--C", type=int, default=100)
    ap.add_argument("--K", type=int, default=3)
    ap.add_argument("--loop-models", type=int, default=8, help="models timed in the per-model loop")
    ap.add_argument("--out", default=None)
    ap.add_argument("--device", default="cuda", help="cuda (default), or cpu for a small smoke run")
    ap.add_argument("--tiny", action="store_true", help="smoke-test sizes (N=600, D=32, M=2,4, L=16)")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    if args.tiny:
        args.N, args.dims, args.models, args.L, args.C, args.loop_models = 600, "32", "2,4", 16, 10, 2
    if DEVICE == "cuda" and not (torch.cuda.is_available() and emms_ext.build_info()["cuda"]):
        sys.exit("bench_gpu.py needs a CUDA GPU and a build with EMMS_WITH_CUDA=ON")
    out = Table(args.out)
    N, L, K, C = args.N, args.L, args.K, args.C
    models = [int(m) for m in args.models.split(",")]
    dims = [int(d) for d in args.dims.split(",")]
    precisions = ("float32", "tf32") if DEVICE == "cuda" else ("float32",)
    dev = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU (smoke run: not a measurement)"
    info = emms_ext.build_info()
    out.emit(
        f"# bench_gpu: {dev}, torch {torch.__version__}, emms_ext {info['version']} (CUDA archs "
        f"{info['cuda_archs'] or '-'}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    classes = torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(0))
    classes[:C] = torch.arange(C)  # every class used

    # 1. Correctness first: device scores (float64 / float32 / TF32) against float64 on the CPU.
    from scipy.stats import kendalltau

    n_small, d_small = min(4000, N), min(256, dims[0])
    out.emit(f"\n## Agreement with float64 ({MAX_POOL} distinct models, N={n_small}, D={d_small})\n")
    small = {f"m{i}": x for i, x in enumerate(make_pool(n_small, d_small, classes[:n_small], MAX_POOL, 1))}
    lab_small = labels_of("classes", classes[:n_small], min(L, 64), K, 2)
    ref = emms_ext.emms_scores({k: v.double().cpu() for k, v in small.items()}, lab_small)
    out.emit("| precision | max rel. score error | Kendall tau vs float64 |")
    out.emit("|---|---:|---:|")
    errors = {}
    for precision in ("float64", "float32", "tf32"):
        got = emms_ext.emms_scores(small, lab_small, precision=precision, progress=False)
        errors[precision] = max(abs(got[n].score - ref[n].score) / abs(ref[n].score) for n in small)
        tau = kendalltau([got[n].score for n in small], [ref[n].score for n in small])[0]
        out.emit(f"| {precision} | {errors[precision]:.2e} | {tau:.3f} |")
    out.target("float64 scores equal the CPU's", f"{errors['float64']:.1e}", "<= 1e-9", errors["float64"] <= 1e-9)
    del small

    # 2. Throughput and GEMM share, per width, precision, zoo size and label form.
    label_sets = {
        kind: labels_of(kind, classes, L if kind == "classes" else max(1, L // 8), K, 3)
        for kind in ("classes", "dense")
    }
    out.emit(
        f"\n## Zoo throughput: N={N}, K={K}; class labels: C={C}, L={L}; dense labels [N, {max(1, L // 8)}, {K}]\n"
    )
    out.emit(
        "| D | M | pool | labels | precision | s / zoo | ms / model | pipeline GEMM TFLOP/s | GEMM peak TFLOP/s "
        "| % of peak |"
    )
    out.emit("|---:|---:|---:|---|---|---:|---:|---:|---:|---:|")
    share = {}
    per_model = {}
    for D in dims:
        pool_size = max(1, min(MAX_POOL, max(models), available_bytes() // 4 // (N * D * 4)))
        pool = make_pool(N, D, classes, pool_size, D)
        peaks = {p: gemm_peak(N, D, p) for p in precisions}
        for precision in precisions:
            for M in models:
                zoo = {f"m{i}": pool[i % pool_size] for i in range(M)}
                for kind, lab in label_sets.items():

                    def run(zoo=zoo, lab=lab, precision=precision):
                        return emms_ext.emms_scores(zoo, lab, precision=precision, progress=False)

                    flops = counted_flops(run)
                    total = best_time(run, repeat=1 if M > 64 else 2)
                    rate = flops / total
                    share[(D, precision, M, kind)] = rate / peaks[precision]
                    per_model[(D, precision, M, kind)] = total / M
                    out.emit(
                        f"| {D} | {M} | {pool_size} | {kind} | {precision} | {total:.3f} | {1e3 * total / M:.2f} | "
                        f"{rate / 1e12:.3g} | {peaks[precision] / 1e12:.3g} | {100 * rate / peaks[precision]:.0f}% |"
                    )
        del pool
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    best_p = precisions[-1]
    key = (dims[-1], best_p, models[-1], "classes")
    out.target(
        f"pipeline GEMMs vs GEMM peak (D={dims[-1]}, M={models[-1]}, {best_p}, class labels)",
        f"{100 * share[key]:.0f}%",
        ">= 50%",
        share[key] >= 0.5,
    )

    # 3. The fused solve inside the pipeline, at K = 3, 8 and 32.
    D, M = dims[0], models[-1]
    out.emit(f"\n## Fused solve inside the pipeline (D={D}, M={M}, {best_p}, class labels, mode exact)\n")
    out.emit("| K | pipeline s (profiled) | wlsr_simplex ms | share |")
    out.emit("|---:|---:|---:|---:|")
    pool_size = max(1, min(MAX_POOL, M, available_bytes() // 4 // (N * D * 4)))
    pool = make_pool(N, D, classes, pool_size, D + 7)
    zoo = {f"m{i}": pool[i % pool_size] for i in range(M)}
    for k in (3, 8, 32):
        lab = labels_of("classes", classes, max(1, min(L, 4096 // k)), k, 4)
        solve, total = solve_time_inside(
            lambda lab=lab, zoo=zoo: emms_ext.emms_scores(zoo, lab, precision=best_p, progress=False)
        )
        out.emit(f"| {k} | {total:.3f} | {1e3 * solve:.2f} | {100 * solve / total:.2f}% |")
        if k in (3, 8):
            out.target(f"fused solve share at K={k}", f"{100 * solve / total:.2f}%", "<= 5%", solve <= 0.05 * total)

    # 4. The batch against a per-model loop: same precision, same label form, per model.
    out.emit(f"\n## Against per-model loops (D={D}, {best_p}; ms per model; loop: emms_score per model)\n")
    out.emit("| labels | emms_scores (M) | ms / model | loop over models | ms / model | loop / batch |")
    out.emit("|---|---:|---:|---:|---:|---:|")
    loop_models = [zoo[f"m{i}"] for i in range(min(args.loop_models, M))]
    for kind, lab in label_sets.items():
        loop = best_time(
            lambda lab=lab: [emms_ext.emms_score(x, lab, precision=best_p) for x in loop_models], repeat=1
        ) / len(loop_models)
        batch = per_model.get((D, best_p, M, kind))
        out.emit(f"| {kind} | {M} | {1e3 * batch:.2f} | {len(loop_models)} | {1e3 * loop:.2f} | {loop / batch:.2f}x |")
        out.target(f"batch no slower than the loop ({kind})", f"{loop / batch:.2f}x", ">= 1x", batch <= loop)
    del pool, zoo

    failed = [name for name, ok in out.targets if not ok]
    out.emit(
        f"\n{len(out.targets) - len(failed)} of {len(out.targets)} targets met"
        + (f"; missed: {', '.join(failed)}" if failed else "")
    )
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The GPU benchmark script cannot run in CI (no GPU), so its logic runs here small, on the CPU, to keep
it from rotting between the sessions that have a GPU."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_smoke_run_on_cpu(tmp_path):
    out = tmp_path / "bench.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_gpu.py"),
            "--device",
            "cpu",
            "--models",
            "2,4",
            "--dims",
            "32",
            "--N",
            "600",
            "--L",
            "16",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    for section in ("Agreement with float64", "Zoo throughput", "Against per-model loops"):
        assert section in text
    # the agreement table: "| precision | max rel. score error | Kendall tau vs float64 |", one row each
    rows = dict(re.findall(r"^\| (float64|float32|tf32) \| (\S+ \| \S+) \|$", text, flags=re.M))
    assert set(rows) == {"float64", "float32", "tf32"}, text
    err, tau = (float(v) for v in rows["float64"].split(" | "))
    assert err <= 1e-9 and tau == 1.0, rows["float64"]  # float64 against itself: the same scores, same order
    for precision in ("float32", "tf32"):
        err, tau = (float(v) for v in rows[precision].split(" | "))
        assert 0 <= err < 1e-2 and tau > 0.9, (precision, rows[precision])

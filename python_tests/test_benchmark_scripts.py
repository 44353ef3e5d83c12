"""The GPU benchmark script cannot run in CI (no GPU), so its logic runs here small, on the CPU, to keep
it from rotting between the sessions that have a GPU."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_smoke_run_on_cpu(tmp_path):
    out = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu",
                           "--models", "2,4", "--dims", "32", "--N", "600", "--L", "16", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    for section in ("Agreement with float64", "Zoo throughput", "Against per-model loops"):
        assert section in text
    assert "| float64 | 0.00e+00 |" in text or "| float64 |" in text

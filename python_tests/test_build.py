"""The extension loads, reports how it was built, and registers exactly its seven ops, each with the kernels
the build promises (CPU and Meta always, CUDA exactly when built with it except the CPU-only
``cholesky_``, ``cholesky_solve`` and ``tridiagonal_solve``, Autograd where differentiable)."""

import importlib.metadata

import pytest
import torch
from testing import CPU_ONLY, OPS

import emms_ext

DIFFERENTIABLE = {"simplex_project", "class_sums"}


def test_build_info_reports_build_facts():
    info = emms_ext.build_info()
    assert info["version"] == emms_ext.__version__ == importlib.metadata.version("emms_ext")
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    assert isinstance(info["cuda"], bool)
    assert info["cuda"] == bool(info["cuda_archs"])
    assert info["compiler"] and info["compiler"] != "unknown"


def test_exactly_the_seven_ops_are_registered():
    registered = {s.name for s in torch._C._jit_get_all_schemas() if s.name.startswith("emms::")}
    assert registered == {f"emms::{op}" for op in OPS}
    assert set(OPS) == {
        "simplex_project",
        "wlsr_simplex",
        "class_sums",
        "logme_evidence",
        "cholesky_",
        "cholesky_solve",
        "tridiagonal_solve",
    }
    assert DIFFERENTIABLE < set(OPS)


@pytest.mark.parametrize("op", sorted(OPS))
def test_op_has_the_kernels_of_the_build(op):
    name = getattr(torch.ops.emms, op).default.name()
    assert name == f"emms::{op}"

    def has(key: str) -> bool:
        return torch._C._dispatch_has_kernel_for_dispatch_key(name, key)

    assert has("CPU"), f"{name}: no CPU kernel"
    assert has("Meta"), f"{name}: no fake (Meta) kernel"
    cuda = emms_ext.build_info()["cuda"] and op not in CPU_ONLY
    assert has("CUDA") == cuda, f"{name}: CUDA kernel registered: {has('CUDA')}, built with CUDA: {cuda}"
    assert has("Autograd") == (op in DIFFERENTIABLE), f"{name}: autograd registration {has('Autograd')}"

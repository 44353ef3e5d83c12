"""The extension loads, reports how it was built, and registers every op."""
import torch

import emms_ext


def test_build_info_reports_build_facts():
    info = emms_ext.build_info()
    assert info["version"] == emms_ext.__version__ == "0.1.0"
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    assert isinstance(info["cuda"], bool)
    assert info["cuda"] == bool(info["cuda_archs"])
    assert info["compiler"] and info["compiler"] != "unknown"


def test_ops_are_registered_with_cpu_kernels():
    for op in ("simplex_project", "wlsr_simplex"):
        packet = getattr(torch.ops.emms, op)
        assert torch._C._dispatch_has_kernel_for_dispatch_key(packet.default.name(), "CPU")
        assert torch._C._dispatch_has_kernel_for_dispatch_key(packet.default.name(), "Meta")

"""One pass over the features: the statistics' own overflow flags replace the separate finite / range passes,
the batch is centred into one buffer (no stacked copy plus a centred copy), and the
pipeline converts device numbers to Python once per batch of models, never once per model."""

from __future__ import annotations

import pytest
import torch
from conftest import make_class_labels, make_dense_labels, make_features, rel_err

import emms_ext
from emms_ext.core.labels import prepare_labels
from emms_ext.core.linalg import symmetric_gram
from emms_ext.core.stats import FeatureStats
from emms_ext.ops import reference

# The Tensor methods that turn a tensor's values into Python objects. On CUDA each one is a device-to-host
# copy that waits for the device (a host sync); the pipeline's Python code is the same on every device.
_HOST_CONVERSIONS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "__format__")


def count_conversions(monkeypatch, fn) -> int:
    """Calls of the ``_HOST_CONVERSIONS`` methods made while ``fn()`` runs."""
    calls = [0]
    for meth in _HOST_CONVERSIONS:
        orig = getattr(torch.Tensor, meth)

        def counted(self, *args, _orig=orig, **kwargs):
            calls[0] += 1
            return _orig(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, meth, counted)
    try:
        fn()
    finally:
        monkeypatch.undo()
    return calls[0]


@pytest.mark.parametrize(
    "labels,kwargs",
    [
        ("class", {}),
        ("dense", {}),
        ("class", {"ridge": "gcv"}),
        ("class", {"mode": "gcv"}),
        ("dense", {"mode": "loo"}),
        ("class", {"precision": "float64", "ridge": 1.0}),
    ],
)
def test_host_conversions_do_not_grow_with_the_zoo(monkeypatch, labels, kwargs):
    """The CUDA path must not sync the host once per model. torch has no CPU emulation of
    ``torch.cuda.set_sync_debug_mode``, and a meta / fake device cannot run the fused solve, so the test
    counts the calls that would sync on CUDA — every Tensor method that turns values into Python objects —
    while a zoo of 1 and of 8 equal-width models is scored on the CPU, where the same Python code runs
    (only the Gram's BLAS call and the memory budget differ by device). The counts must be equal: whatever
    syncs remain are per batch (the batch's flags and results come back as one list each), not per model.
    Label preparation happens once per call and is the same for both."""
    N, D = 300, 24
    basis = make_class_labels(600, N, 12, 6, 3) if labels == "class" else make_dense_labels(601, N, 6, 3)
    zoo = {f"m{i}": make_features(610 + i, N, D, dtype=torch.float32) for i in range(8)}
    one = {"m0": zoo["m0"]}
    emms_ext.emms_scores(one, basis, **kwargs)  # warm-up: lazy imports and op registration
    n1 = count_conversions(monkeypatch, lambda: emms_ext.emms_scores(one, basis, **kwargs))
    n8 = count_conversions(monkeypatch, lambda: emms_ext.emms_scores(zoo, basis, **kwargs))
    assert n8 == n1, f"{n1} host conversions for 1 model, {n8} for 8: some are per model"
    # and the counter really counts: a per-model conversion would have shown
    assert count_conversions(monkeypatch, lambda: [float(x.sum()) for x in zoo.values()]) == 8


def test_centring_into_one_buffer_keeps_large_means_exact():
    """Models passed as a list are centred into one batch buffer (no stacked copy): float32 features around
    1e4 give the float64 statistics to float32 accuracy, equal to the stacked-tensor path bit for bit."""
    N, D = 3000, 16
    basis = prepare_labels(make_class_labels(620, N, 9, 4, 2))
    xs = [(make_features(621 + i, N, D) + 1e4 * (i + 1)).float() for i in range(3)]
    listed = FeatureStats(basis, 3, D, torch.float32)
    stacked = FeatureStats(basis, 3, D, torch.float32)
    exact = FeatureStats(basis, 3, D, torch.float64)
    for start in range(0, N, 1024):
        rows = [x[start : start + 1024] for x in xs]
        listed.update(rows)
        stacked.update(torch.stack(rows))
        exact.update([r.double() for r in rows])
    a, b, ref = listed.finalize(), stacked.finalize(), exact.finalize()
    assert torch.equal(a.G, b.G) and torch.equal(a.F, b.F)
    assert (a.G - ref.G).abs().max() / ref.G.abs().max() < 1e-4
    assert not bool(a.overflow.any())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_block_gram_equals_the_gemm(dtype):
    """The lower-block Gram plus its mirror equals x'x to the dtype's rounding (D = 1100: two column
    blocks); the mirrored block is the exact transpose of the computed one."""
    x = make_features(630, 300, 1100, dtype=dtype)[None].expand(2, -1, -1).contiguous()
    x[1] *= -2.0
    G = symmetric_gram(x)
    ref = x.double().transpose(1, 2) @ x.double()
    assert G.dtype == torch.float64 and G.shape == (2, 1100, 1100)
    assert torch.equal(G[:, :550, 550:], G[:, 550:, :550].transpose(1, 2))
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (G - ref).abs().max() <= rtol * ref.abs().max()


def test_bad_models_in_a_zoo_found_from_the_statistics():
    """Non-finite and too-large features are no longer checked by a pass of their own: their batch's
    statistics flag them. The errors stay the same clear ones, only the bad model is skipped, and with the
    automatic precision a float32 model too large for a float32 Gram is scored in float64."""
    N, D = 80, 6
    Z = make_dense_labels(640, N, 3, 2)
    good = {f"ok{i}": make_features(641 + i, N, D, dtype=torch.float32) for i in range(3)}
    nan = good["ok0"].clone()
    nan[11, 2] = float("nan")
    big = good["ok1"].clone()
    big[5, 4] = 1e30
    huge = good["ok2"].double()
    huge[7, 0] = 1e200
    zoo = {"nan": nan, **good, "big": big}
    with pytest.warns(UserWarning, match="skipped"):
        out = emms_ext.emms_scores(zoo, Z, precision="float32", errors="skip")
    assert set(out.scores) == set(good)
    assert "must be finite (got 1 NaN/Inf values in rows 0..79" in out.failures["nan"]
    assert "has values up to 1e+30, too large for a float32 Gram" in out.failures["big"]
    for name, x in good.items():
        assert out[name].score == emms_ext.emms_score(x, Z, precision="float32").score
    auto = emms_ext.emms_scores({**zoo, "huge": huge}, Z, errors="skip")
    assert set(auto.scores) == {"big", *good} and "too large for a float64 Gram" in auto.failures["huge"]
    assert auto["big"].gram_precision == "float64" and auto["ok0"].gram_precision == "float32"
    ref = reference.emms_score(big.double(), Z)["score"]
    assert rel_err(auto["big"].score, ref) < 1e-9
    assert torch.isnan(nan[11, 2]) and big[5, 4] == 1e30  # inputs not modified
    with pytest.raises(ValueError, match=r"features\['nan'\] must be finite"):
        emms_ext.emms_scores(zoo, Z)


def test_without_weights_the_zoo_keeps_no_gram():
    """Once B is formed a batch drops its D x D matrices (a zoo's memory holds one batch's statistics at a
    time); asking for W keeps them and W matches the single-model fit."""
    N, D = 120, 10
    labels = make_class_labels(650, N, 7, 4, 2)
    zoo = {f"m{i}": make_features(651 + i, N, D) for i in range(4)}
    plain = emms_ext.emms_scores(zoo, labels)
    with_w = emms_ext.emms_scores(zoo, labels, return_W=True)
    for name, x in zoo.items():
        assert plain[name].score == with_w[name].score and plain[name].W is None
        assert torch.allclose(with_w[name].W, emms_ext.emms_score(x, labels, return_W=True).W, atol=1e-10)


def test_batches_share_one_centring_buffer(monkeypatch):
    """A zoo split into several batches centres every batch into one buffer (fresh memory costs page faults
    ten times the centring itself: common/workspace.py), and the scores equal each model scored alone, bit
    for bit."""
    from emms_ext.common import workspace
    from emms_ext.core import ingest

    N, D = 200, 16
    labels = make_class_labels(660, N, 9, 4, 3)
    zoo = {f"m{i}": make_features(661 + i, N, D, dtype=torch.float32) for i in range(7)}
    monkeypatch.setattr(workspace, "_MIN_BYTES", 0)  # this small zoo's buffers through the workspace too
    workspace.release()
    centred, empty = [], workspace.empty

    def spy(shape, dtype, device=None):
        out = empty(shape, dtype, device)
        if len(shape) == 3 and shape[1:] == (N, D):
            centred.append((out.data_ptr(), shape[0]))
        return out

    monkeypatch.setattr(workspace, "empty", spy)
    r = prepare_labels(labels).r
    per_model = 8 * (4 * D * D + 3 * D * r) + 2 * N * D * 4  # model_groups' estimate for this shape
    monkeypatch.setattr(ingest, "batch_budget", lambda device: 3 * per_model)  # batches of 3, 3, 1
    zoo_scores = emms_ext.emms_scores(zoo, labels)
    assert [m for _, m in centred] == [3, 3, 1] and len({p for p, _ in centred}) == 1
    for name, x in zoo.items():
        assert zoo_scores[name].score == emms_ext.emms_score(x, labels).score
    workspace.release()

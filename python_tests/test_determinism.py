"""Same inputs, same scores: bitwise across runs; across thread counts up to BLAS reduction order."""

from __future__ import annotations

import torch
from conftest import make_class_labels, make_dense_labels, make_features, rel_err

import emms_ext


def zoo_and_labels():
    N = 2000
    zoo = {f"m{d}": make_features(500 + d, N, d, shift=3.0) for d in (16, 64, 64, 200)}
    return zoo, make_class_labels(500, N, 30, 8, 3), make_dense_labels(501, N, 8, 2)


def test_bitwise_identical_across_runs():
    zoo, vocab, dense = zoo_and_labels()
    for labels in (vocab, dense):
        for precision in (None, "float64"):
            a = emms_ext.emms_scores(zoo, labels, precision=precision)
            b = emms_ext.emms_scores(zoo, labels, precision=precision)
            for name in zoo:
                assert a[name].score == b[name].score and torch.equal(a[name].t, b[name].t)


def test_thread_count_changes_only_rounding():
    """BLAS may split reductions differently with more threads: scores agree to 1e-12 relative (float64)
    and 1e-5 (float32 Grams); the class sums themselves are order-fixed and bitwise equal."""
    zoo, vocab, _ = zoo_and_labels()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one64 = emms_ext.emms_scores(zoo, vocab, precision="float64")
        one32 = emms_ext.emms_scores({k: v.float() for k, v in zoo.items()}, vocab)
        x = zoo["m64"].float()
        order, offsets = emms_ext.class_order(vocab[1], 30)
        s1 = emms_ext.class_sums(x, order, offsets)
        torch.set_num_threads(2)
        two64 = emms_ext.emms_scores(zoo, vocab, precision="float64")
        two32 = emms_ext.emms_scores({k: v.float() for k, v in zoo.items()}, vocab)
        s2 = emms_ext.class_sums(x, order, offsets)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(s1, s2)
    for name in zoo:
        assert rel_err(one64[name].score, two64[name].score) <= 1e-12
        assert rel_err(one32[name].score, two32[name].score) <= 1e-5

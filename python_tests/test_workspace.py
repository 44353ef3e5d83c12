"""The CPU workspace (common/workspace.py): buffers kept between scores are handed out again only when no
tensor holds them, within the size limit, and the scores are the same bits with and without it."""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import make_class_labels, make_dense_labels, make_features

import emms_ext
from emms_ext.common import workspace

MB = 1 << 20


@pytest.fixture(autouse=True)
def empty_pool(monkeypatch):
    monkeypatch.delenv(workspace.WORKSPACE_ENV, raising=False)
    workspace.release()
    yield
    workspace.release()


def test_a_free_buffer_is_handed_out_again_and_a_held_one_never():
    a = workspace.empty((2 * MB // 4,), torch.float32)
    first = a.data_ptr()
    del a
    b = workspace.empty((512, 1024), torch.float64)  # 4 MB > 2 MB: a new buffer
    c = workspace.empty((MB // 8,), torch.float64)  # 1 MB fits the free 2 MB buffer
    assert c.data_ptr() == first != b.data_ptr()
    view = c[10:20]  # a view still holds c's memory
    del c
    d = workspace.empty((MB // 4,), torch.float32)
    assert d.data_ptr() not in (first, b.data_ptr())
    del view
    e = workspace.empty((MB // 4,), torch.float32)
    assert e.data_ptr() == first and e.shape == (MB // 4,) and e.is_contiguous()
    assert workspace.held_bytes() == 2 * MB + 4 * MB + MB


def test_the_smallest_free_buffer_that_fits_is_taken():
    big, small = workspace.empty((8 * MB,), torch.uint8), workspace.empty((2 * MB,), torch.uint8)
    ptrs = big.data_ptr(), small.data_ptr()
    del big, small
    assert workspace.empty((MB + 1,), torch.uint8).data_ptr() == ptrs[1]


def test_the_limit_evicts_least_recently_used_buffers(monkeypatch):
    monkeypatch.setenv(workspace.WORKSPACE_ENV, "5")
    a, b = workspace.empty((2 * MB,), torch.uint8), workspace.empty((2 * MB,), torch.uint8)
    pa, pb = a.data_ptr(), b.data_ptr()
    del a, b
    workspace.empty((MB,), torch.uint8)  # reuses a (the smallest fit, first listed): b is now the older one
    c = workspace.empty((3 * MB,), torch.uint8)  # 2 + 2 + 3 > 5: the least recently used free one goes
    assert workspace.held_bytes() == 5 * MB
    del c
    assert workspace.empty((2 * MB,), torch.uint8).data_ptr() in (pa, pb)
    monkeypatch.setenv(workspace.WORKSPACE_ENV, "0")
    workspace.release()
    x = workspace.empty((4 * MB,), torch.uint8)
    assert x.numel() == 4 * MB and workspace.held_bytes() == 0


def test_a_bad_limit_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(workspace.WORKSPACE_ENV, "lots")
    with pytest.raises(ValueError, match="EMMS_EXT_WORKSPACE_MB must be a number of MiB.*'lots'"):
        workspace.empty((2 * MB,), torch.uint8)


def test_release_keeps_buffers_in_use_intact():
    a = workspace.empty((MB,), torch.float32).fill_(3.0)
    assert emms_ext.release_workspace() == 4 * MB and workspace.held_bytes() == 0
    b = workspace.empty((MB,), torch.float32).fill_(0.0)
    assert b.data_ptr() != a.data_ptr() and bool((a == 3.0).all())


def test_small_blocks_and_other_devices_are_plain_allocations():
    assert workspace.empty((10, 10), torch.float64).shape == (10, 10)
    m = workspace.empty((1024, 1024), torch.float32, "meta")
    assert m.device.type == "meta" and workspace.held_bytes() == 0


def test_threads_never_share_a_buffer():
    held, start = [], threading.Barrier(4)

    def take():
        start.wait()
        x = workspace.empty((MB,), torch.float32)
        held.append(x)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({x.data_ptr() for x in held}) == 4


def test_a_buffer_made_in_inference_mode_is_writable_outside_it():
    with torch.inference_mode():
        a = workspace.empty((MB,), torch.float32).fill_(1.0)
        first = a.data_ptr()
    del a
    b = workspace.empty((MB,), torch.float32)
    b += 1.0  # an inference tensor would refuse this outside inference mode
    assert b.data_ptr() == first


@pytest.mark.parametrize("mode", ["exact", "gcv"])
def test_scores_are_the_same_bits_with_and_without_kept_buffers(monkeypatch, mode):
    """Large enough that the centred rows, Grams and factors come from the workspace; the second call of each
    reuses the first's buffers."""
    N, D = 1500, 300
    x = make_features(670, N, D, dtype=torch.float32)
    classes = make_class_labels(671, N, 12, 6, 3)
    dense = make_dense_labels(672, N, 6, 3, x.double())
    runs = []
    for limit in ("512", "512", "0"):
        monkeypatch.setenv(workspace.WORKSPACE_ENV, limit)
        runs.append([emms_ext.emms_score(x, labels, mode).score for labels in (classes, dense)])
    assert runs[0] == runs[1] == runs[2]


def test_results_that_keep_statistics_are_not_overwritten_by_later_scores():
    N, D = 1500, 300
    labels = make_class_labels(673, N, 12, 6, 3)
    first = emms_ext.emms_score(make_features(674, N, D, dtype=torch.float32), labels, return_W=True)
    W = first.W.clone()
    for seed in (675, 676):
        emms_ext.emms_score(make_features(seed, N, D, dtype=torch.float32), labels, return_W=True)
    assert torch.equal(first.W, W)

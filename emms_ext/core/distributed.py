"""Score one zoo across several processes with ``torch.distributed``.

Every rank prepares the (shared, cheap) label statistics itself, scores its share of the models, and the
results are gathered on rank 0 (or on every rank). Models are dealt round-robin in the order of the zoo's
keys, so the split is the same on every rank without communication. Launch with torchrun, e.g.

    torchrun --nproc_per_node=4 my_script.py          # one node, 4 processes (CPU: gloo; GPUs: nccl)
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_endpoint=HOST:PORT my_script.py   # two nodes

where ``my_script.py`` calls ``torch.distributed.init_process_group()`` and then
``emms_scores_distributed(zoo, labels, device=f"cuda:{local_rank}")`` for one GPU per process. Only
Python objects (scores, t, small tensors) travel between ranks; features never do.
"""

from __future__ import annotations

import torch.distributed as dist

from .score import ZooScores, emms_scores


def shard(names: list, rank: int, world_size: int) -> list:
    """The models rank `rank` scores: every world_size-th name, starting at rank."""
    return names[rank::world_size]


def emms_scores_distributed(
    zoo: dict, label_embeddings, *, dst: int | None = 0, group=None, **kwargs
) -> ZooScores | None:
    """``emms_scores`` with the zoo split over the ranks of the default (or given) process group.

    Args:
        zoo: dict name -> features, the same keys on every rank (a rank only touches its share, so
            values may be lazy, e.g. file paths or iterators that open files).
        label_embeddings: as in ``emms_scores`` (every rank needs them).
        dst: rank that receives the gathered ``ZooScores`` (others get None); None = every rank gets it.
        kwargs: passed to ``emms_scores`` (mode, ridge, precision, device, errors, ...).
    Returns: ``ZooScores`` in the zoo's order, with failures from every rank, on ``dst`` (or everywhere).
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            "emms_scores_distributed needs torch.distributed.init_process_group() first "
            "(launch with torchrun); use emms_scores in a single process"
        )
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    names = list(zoo)
    mine = {name: zoo[name] for name in shard(names, rank, world)}
    local = emms_scores(mine, label_embeddings, progress=False, **kwargs) if mine else ZooScores({}, {})
    payload = (dict(local), local.failures)
    if dst is None:
        parts = [None] * world
        dist.all_gather_object(parts, payload, group=group)
    else:
        parts = [None] * world if rank == dst else None
        dist.gather_object(payload, parts, dst=dst, group=group)
        if rank != dst:
            return None
    results, failures = {}, {}
    for res, fail in parts:
        results.update(res)
        failures.update(fail)
    return ZooScores({n: results[n] for n in names if n in results}, failures)

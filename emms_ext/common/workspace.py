"""CPU memory kept between scores for their large intermediates (docs/design.md §6, "Workspace").

Fresh memory costs its page faults on first touch, about 0.4 ms per MB on the project's CPU: centring 5000 x 2048
float32 rows takes 17.5 ms into fresh memory and 1.7 ms into memory already touched, and the page faults of one
score's centred rows, Gram and float32 factor were ~12% of ``exact`` at D = 2048 (benchmarks/README.md). glibc
returns blocks above 32 MB to the kernel when they are freed, so every score pays them again.

``empty(shape, dtype)`` hands out a view of a kept buffer that nothing else references (the smallest that fits),
else allocates one and keeps it while the kept total stays within the limit (``EMMS_EXT_WORKSPACE_MB``, default
512; 0 keeps nothing). A buffer is reused only once no tensor holds its memory any more (its storage's
reference count), so a view that outlives a call (a returned factor, a batch kept by the jackknife) is never
overwritten, and concurrent threads never share one. ``release()`` (``emms_ext.release_workspace``) lets go of
every kept buffer (one still in use is freed with its last view). GPUs already have torch's caching allocator:
there ``empty`` is ``torch.empty``.
"""

from __future__ import annotations

import math
import os
import threading

import torch

WORKSPACE_ENV = "EMMS_EXT_WORKSPACE_MB"
_MIN_BYTES = 1 << 20  # smaller blocks come from malloc's own free lists, without page faults
_lock = threading.Lock()
_clock = 0


class _Kept:
    """One kept buffer (uint8), its storage's reference count when nothing but the pool holds it, its last use."""

    __slots__ = ("buf", "idle_refs", "last")

    def __init__(self, buf: torch.Tensor, idle_refs: int):
        self.buf, self.idle_refs, self.last = buf, idle_refs, 0

    def free(self) -> bool:
        return _references(self.buf) == self.idle_refs


_kept: list[_Kept] = []


def limit_bytes() -> int:
    """The most bytes kept between calls (``EMMS_EXT_WORKSPACE_MB``, read on each call; default 512 MiB)."""
    raw = os.environ.get(WORKSPACE_ENV, "512")
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"{WORKSPACE_ENV} must be a number of MiB, e.g. 512 or 0; got {raw!r}") from None
    return max(0, int(mb * (1 << 20)))


def _references(buf: torch.Tensor) -> int | None:
    use_count = getattr(torch._C, "_storage_Use_Count", None)  # private, stable since torch 1.x
    return None if use_count is None else use_count(buf.untyped_storage()._cdata)


def empty(shape: tuple[int, ...], dtype: torch.dtype, device=None) -> torch.Tensor:
    """An uninitialized contiguous tensor of ``shape`` and ``dtype``, as ``torch.empty``; on the CPU a view of
    a kept buffer when one is free."""
    global _clock
    device = torch.device("cpu" if device is None else device)
    nbytes = math.prod(shape) * dtype.itemsize
    if device.type != "cpu" or nbytes < _MIN_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    limit = limit_bytes()
    with _lock:
        _clock += 1
        free = [k for k in _kept if k.free()]
        fits = [k for k in free if k.buf.numel() >= nbytes]
        if fits:
            entry = min(fits, key=lambda k: k.buf.numel())
        else:
            # Make room: the least recently used free buffers go first. A buffer that cannot be kept is still
            # handed out, unkept.
            held = sum(k.buf.numel() for k in _kept)
            for k in sorted(free, key=lambda k: k.last):
                if held + nbytes <= limit:
                    break
                _kept[:] = [other for other in _kept if other is not k]
                held -= k.buf.numel()
            buf = _fresh(nbytes)
            refs = _references(buf)
            if held + nbytes > limit or refs is None:
                return buf[:nbytes].view(dtype).view(shape)
            entry = _Kept(buf, refs)
            _kept.append(entry)
        entry.last = _clock
        return entry.buf[:nbytes].view(dtype).view(shape)


def converted(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A contiguous copy of x in ``dtype`` (``x.to(dtype, copy=True)``), into ``empty``'s memory."""
    return empty(tuple(x.shape), dtype, x.device).copy_(x)


def _fresh(nbytes: int) -> torch.Tensor:
    # Outside inference mode: a kept buffer made inside it could not be written outside it later.
    with torch.inference_mode(False):
        return torch.empty(nbytes, dtype=torch.uint8)


def held_bytes() -> int:
    """Bytes of the buffers kept now (in use or free)."""
    with _lock:
        return sum(k.buf.numel() for k in _kept)


def release() -> int:
    """Drop every kept buffer that no tensor uses (those in use are dropped from the pool and freed when their
    last view goes); returns the bytes no longer kept."""
    with _lock:
        n = sum(k.buf.numel() for k in _kept)
        _kept.clear()
    return n

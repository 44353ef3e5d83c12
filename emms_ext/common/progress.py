"""The one progress bar of the package: tqdm when it is installed and wanted, otherwise a no-op with the
same ``update`` / ``close`` interface."""

from __future__ import annotations

from collections.abc import Iterable


class _NoBar:
    """Stands in for a tqdm bar that is not shown."""

    def update(self, n: int = 1) -> None:
        """Ignore progress."""

    def close(self) -> None:
        """Nothing to close."""


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool | None, *, auto: bool = True):
    """A bar over ``total`` items (``update(n)`` / ``close()``).

    ``enabled``: True shows it, False hides it, None decides by ``auto`` (e.g. "the zoo is large") and
    leaves tqdm to hide it when stderr is not a terminal.
    """
    if enabled is False or (enabled is None and not auto):
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are optional
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled is None else False, leave=False)


def progress_iter(iterable: Iterable, total: int | None, desc: str, unit: str, enabled: bool | None) -> Iterable:
    """``iterable`` wrapped in a bar (see ``progress_bar``); the bare iterable when none is shown."""
    if enabled is False or (total is not None and total <= 1):
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=None if enabled is None else False, leave=False)

"""Shared by the ``emms`` subcommands: exit codes, ``UsageError``, and the readers of the input files
(labels, line lists, JSON maps), which turn a bad file into a one-line usage error."""

from __future__ import annotations

import csv
import json
from pathlib import Path

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem with the command line or the input files: reported in one line, exit code 2."""


# -------------------------------------------------------------------------------------- file readers
def _need_file(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"{what} file {path!r} does not exist; check the path given to --{what.replace(' ', '-')}")
    return p


def _parse_column(values: list[str], regression: bool):
    import numpy as np

    if regression:
        try:
            return np.array([float(v) for v in values], dtype=np.float64)
        except ValueError as exc:
            raise UsageError(f"--labels: regression targets must be numbers ({exc})") from exc
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        return [v for v in values]  # class names


def read_labels(path: str, regression: bool = False):
    """Labels from .npy (ints, names or floats), .txt (one per line) or .csv (one column, or the column
    named label/labels/target/y, else the last; a header row is detected)."""
    import numpy as np

    p = _need_file(path, "labels")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise UsageError(f"--labels {path}: not a plain .npy array ({exc})") from exc
        if arr.dtype.kind in "US":
            return [str(x) for x in arr.tolist()]
        return arr.astype(np.float64) if regression else arr
    text = p.read_text(encoding="utf-8")
    if suffix == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        if not rows:
            raise UsageError(f"--labels {path}: the file is empty")
        header = [c.strip().lower() for c in rows[0]]
        col = next((header.index(k) for k in ("label", "labels", "target", "y") if k in header), None)
        has_header = col is not None or (len(rows) > 1 and not _numeric(rows[0][-1]) and _numeric(rows[1][-1]))
        col = len(rows[0]) - 1 if col is None else col
        values = [r[col].strip() for r in rows[1 if has_header else 0 :]]
    else:
        values = [line.strip() for line in text.splitlines() if line.strip()]
    if not values:
        raise UsageError(f"--labels {path}: no labels found")
    return _parse_column(values, regression)


def _numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def read_lines(path: str, what: str) -> list[str]:
    """The stripped non-empty lines of a text file; a missing or empty file is a ``UsageError`` naming ``what``."""
    p = _need_file(path, what)
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise UsageError(f"--{what.replace(' ', '-')} {path}: the file has no non-empty lines")
    return lines


def read_json(path: str, what: str) -> dict:
    """A JSON object ``{model name: value}`` read from ``path``; a missing file, invalid JSON or a non-object
    is a ``UsageError`` naming ``what``."""
    p = _need_file(path, what)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"--{what} {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"--{what} {path}: must be a JSON object {{model name: value}}")
    return data


def read_jsonl(path: str, what: str) -> list:
    """One JSON value per non-empty line (a string or a list of strings per sample); a missing file, a bad line
    or an empty file is a ``UsageError`` naming ``what`` and the line."""
    p = _need_file(path, what)
    out = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"--{what} {path} line {i}: not valid JSON ({exc}); write one JSON string or list per line"
            ) from exc
        if not (
            isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value))
        ):
            raise UsageError(
                f"--{what} {path} line {i}: must be a string or a non-empty list of strings (got {line[:60]!r})"
            )
        out.append(value)
    if not out:
        raise UsageError(f"--{what} {path}: the file has no samples")
    return out


def read_array(path: str, what: str, shape: str):
    """A numeric .npy array; ``shape`` (e.g. "[N, 4]") is checked by the caller and named in errors."""
    import numpy as np

    p = _need_file(path, what)
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise UsageError(f"--{what} {path}: not a plain .npy array {shape} ({exc})") from exc
    if arr.dtype.kind not in "iuf":
        raise UsageError(f"--{what} {path}: must be a numeric array {shape} (got dtype {arr.dtype})")
    return arr

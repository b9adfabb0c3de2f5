"""Loading (N, D) arrays from .npy / .csv files, and the error for each bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ebmlab.data import load_array


def _raises(path: Path, match: str) -> str:
    with pytest.raises(ValueError, match=match) as info:
        load_array(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    return msg


def test_npy_roundtrip(tmp_path: Path) -> None:
    a = np.random.default_rng(0).normal(size=(50, 3))
    np.save(tmp_path / "x.npy", a)
    t = load_array(tmp_path / "x.npy")
    assert t.dtype == torch.float32 and t.shape == (50, 3)
    np.testing.assert_allclose(t.numpy(), a.astype(np.float32))
    np.save(tmp_path / "i.npy", np.arange(6).reshape(3, 2))
    assert load_array(str(tmp_path / "i.npy")).tolist() == [[0, 1], [2, 3], [4, 5]]


def test_csv_with_and_without_header(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1,2\n3.5, -4e-1\n\n5,6\n")
    a = load_array(tmp_path / "a.csv")
    np.testing.assert_allclose(a.numpy(), [[1, 2], [3.5, -0.4], [5, 6]], rtol=1e-7)
    (tmp_path / "b.CSV").write_text("x,y\n1,2\n3,4\n")
    t = load_array(tmp_path / "b.CSV")
    assert t.dtype == torch.float32 and t.tolist() == [[1, 2], [3, 4]]
    (tmp_path / "c.csv").write_text("value\n1\n2\n3\n")
    assert load_array(tmp_path / "c.csv").shape == (3, 1)


def test_missing_file(tmp_path: Path) -> None:
    _raises(tmp_path / "nope.npy", "file not found")


def test_unsupported_extension(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_text("1,2\n")
    _raises(p, r"unsupported file type '.txt'; use one of .npy, .csv")


def test_corrupt_npy(tmp_path: Path) -> None:
    p = tmp_path / "bad.npy"
    p.write_bytes(b"this is not numpy\x00\x01")
    _raises(p, "corrupt or unreadable .npy")
    q = tmp_path / "obj.npy"
    np.save(q, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _raises(q, "corrupt or unreadable .npy")
    s = tmp_path / "str.npy"
    np.save(s, np.array([["a", "b"]]))
    _raises(s, "expected numeric data")


def test_unparseable_csv(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("1,2\n3,abc\n")
    _raises(p, r"line 2, column 2: 'abc' is not a number")
    q = tmp_path / "ragged.csv"
    q.write_text("x,y\n1,2\n3\n")
    _raises(q, "line 3 has 1 columns, expected 2")
    r = tmp_path / "bin.csv"
    r.write_bytes(b"\xff\xfe\x00\x81")
    _raises(r, "not UTF-8")


def test_wrong_ndim(tmp_path: Path) -> None:
    p = tmp_path / "one.npy"
    np.save(p, np.arange(4.0))
    _raises(p, r"expected a 2-D array \(N, D\), got shape \(4,\)")
    q = tmp_path / "three.npy"
    np.save(q, np.zeros((2, 2, 2)))
    _raises(q, r"got shape \(2, 2, 2\)")


def test_zero_rows(tmp_path: Path) -> None:
    p = tmp_path / "empty.npy"
    np.save(p, np.zeros((0, 2)))
    _raises(p, "no data rows")
    q = tmp_path / "header_only.csv"
    q.write_text("x,y\n")
    _raises(q, "no data rows")
    r = tmp_path / "blank.csv"
    r.write_text("")
    _raises(r, "no data rows")


def test_non_finite_rows(tmp_path: Path) -> None:
    a = np.ones((5, 2))
    a[1, 0] = np.nan
    a[3] = [np.inf, np.nan]
    np.save(tmp_path / "nan.npy", a)
    _raises(tmp_path / "nan.npy", r"2 of 5 rows contain NaN or infinite values \(first at row")
    (tmp_path / "inf.csv").write_text("1,2\ninf,3\n")
    _raises(tmp_path / "inf.csv", "1 of 2 rows contain NaN or infinite")
    np.save(tmp_path / "big.npy", np.array([[1e300, 0.0]]))
    _raises(tmp_path / "big.npy", "beyond the float32 range")

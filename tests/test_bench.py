"""The benchmark scripts run end to end at toy size (their numbers live in the README)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_stein_rbm_ends_with_a_json_line_of_test_likelihoods(tmp_path, capsys):
    bench = _load("stein_rbm")
    bench.main(["--iterations", "6", "--evals", "1", "--seeds", "0",
                "--methods", "cd1,steincd,steingan", "--out", str(tmp_path)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    finals = json.loads(last)
    assert set(finals) == {"cd1", "steincd", "steingan"}
    assert all(-100 < v < 0 for v in finals.values())
    assert (tmp_path / "curves.png").exists() and (tmp_path / "samples_steingan.png").exists()
    assert "gmm_10_full" in (tmp_path / "report.md").read_text()


def test_stein_rbm_rejects_unknown_methods():
    bench = _load("stein_rbm")
    with pytest.raises(SystemExit):
        bench.parse_args(["--methods", "cd1,nope"])


def test_learning_bench_scores_a_method_exactly(tmp_path, capsys):
    bench = _load("learning")
    out = tmp_path / "learning.md"
    bench.main(["--quick", "--budget", "0.5", "--datasets", "8gaussians", "--methods",
                "cd,steincd", "--no-peer", "--longrun-steps", "20", "--n-grid", "60",
                "--out", str(out)])
    text = out.read_text()
    assert "| 8gaussians | CD-5 (from data) |" in text
    assert "| 8gaussians | SteinCD (ε = 0.1) |" in text
    assert "failed" not in text


def test_gebm_bench_runs_every_part_at_toy_size(tmp_path, capsys):
    pytest.importorskip("zuko")
    bench = _load("gebm")
    out = tmp_path / "gebm.md"
    headline = bench.main(["--iterations", "30", "--tabular-iterations", "5",
                           "--grad-budgets", "10", "--mode-budget", "20",
                           "--density-data", "8gaussians", "--tabular", "wine",
                           "--out", str(out)])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) == {"lowdim", "modes_per_chain", "density", "minutes"}
    assert {"base", "ula@10", "imh@10", "x_space_ebm"} <= set(last["lowdim"])
    assert last["density"]["8gaussians/flow"] > 0 and "wine/gebm" in last["density"]
    text = out.read_text()
    assert "| held-out data (noise floor) |" in text and "## Claims" in text
    assert "failed" not in text
    assert headline["density"] == last["density"]

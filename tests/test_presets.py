"""Every preset in configs/ is a valid config (and trains, briefly)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ebmlab.config import load_config
from ebmlab.experiment import RunConfig
from ebmlab.train import start_run

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


def test_presets_exist():
    names = {p.stem for p in PRESETS}
    assert {"gmm_convergent", "gmm_nonconvergent", "rings_convergent", "rings_nonconvergent",
            "rings_anila", "rings_langevin", "steincd_digits", "steingan_digits",
            "coopnets_toy", "coopnets_digits", "vals_toy", "vals_digits"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_and_trains(path, tmp_path):
    cfg = load_config(RunConfig, path=path, overrides=[
        "train.iterations=3", "train.progress=false", "train.plot_every=0",
        "train.longrun_factor=1", "data.n_train=500", "data.n_test=200"])
    summary = start_run(cfg, tmp_path / "run").fit()
    assert summary["iteration"] == 3
    if cfg.model.name == "rbm":
        assert summary["test_ll"] < 0  # exact (RBM)
    elif cfg.data.name in ("digits",):
        assert math.isfinite(summary["energy_test"])
    else:
        assert summary["kl"] > 0

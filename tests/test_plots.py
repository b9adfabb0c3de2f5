"""Every plot writes a non-empty PNG and returns its path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ebmlab.data import make_toy, toy_target
from ebmlab.energies import MLPEnergy
from ebmlab.plots import plot_density, plot_samples, plot_traces, plot_trajectories

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(p: Path) -> bool:
    return p.is_file() and p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG_MAGIC


def test_plot_density(tmp_path: Path) -> None:
    target = toy_target("8gaussians")
    data = make_toy("8gaussians", 500)
    samples = make_toy("8gaussians", 200, seed=1).numpy() * 1.5  # some outside the box
    out = plot_density(target, tmp_path / "sub" / "d.png", (-5, 5), n_grid=80,
                       samples=samples, data=data, title="8 gaussians")
    assert out == tmp_path / "sub" / "d.png" and _is_png(out)
    # A float32 network energy, bounds derived from the samples.
    out2 = plot_density(MLPEnergy(2), str(tmp_path / "m.png"), None, n_grid=50, samples=data)
    assert _is_png(out2)
    with pytest.raises(ValueError, match="bounds are required"):
        plot_density(target, tmp_path / "x.png", None)


def test_plot_samples(tmp_path: Path) -> None:
    s = torch.randn(300, 2)
    out = plot_samples(s, tmp_path / "s.png", data=np.random.default_rng(0).normal(size=(400, 2)))
    assert _is_png(out)
    assert _is_png(plot_samples(s.numpy(), tmp_path / "s2.png", bounds=((-4, 4), (-3, 3))))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        plot_samples(torch.randn(10, 3), tmp_path / "bad.png")


def test_plot_trajectories(tmp_path: Path) -> None:
    traj = torch.cumsum(0.1 * torch.randn(50, 30, 2, generator=torch.Generator().manual_seed(0)),
                        dim=0)
    out = plot_trajectories(traj, tmp_path / "t.png", energy=toy_target("rings"),
                            bounds=(-5, 5), n_show=5, n_grid=60)
    assert _is_png(out)
    assert _is_png(plot_trajectories(traj.numpy(), tmp_path / "t2.png"))
    with pytest.raises(ValueError, match="traj must have shape"):
        plot_trajectories(torch.zeros(5, 2), tmp_path / "bad.png")


def test_plot_traces(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    traces = {
        "energy": torch.randn(100).cumsum(0),
        "grad norm": rng.random((100, 8)),
        "acceptance": rng.random(100),
        "step size": np.full(100, 0.1),
    }
    assert _is_png(plot_traces(traces, tmp_path / "tr.png", title="diagnostics"))
    assert _is_png(plot_traces({"energy": [1.0, 2.0, 1.5]}, tmp_path / "one.png"))
    with pytest.raises(ValueError, match="empty"):
        plot_traces({}, tmp_path / "none.png")
    with pytest.raises(ValueError, match="must have shape"):
        plot_traces({"x": np.zeros((2, 2, 2))}, tmp_path / "bad.png")


# -- what the figures show (drawn, then inspected) ---------------------------------------------


@pytest.fixture
def drawn(monkeypatch):
    """Records every figure's axes (title, labels, limits, position, bars) as it is saved."""
    import ebmlab.plots

    figures: dict[str, list[dict]] = {}
    save = ebmlab.plots._save

    def recording_save(fig, path):
        fig.canvas.draw()
        figures[Path(path).name] = [{
            "title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
            "ylim": ax.get_ylim(), "aspect": ax.get_aspect(), "yscale": ax.get_yscale(),
            "pos": ax.get_position().bounds, "label": ax.get_label(),
            "bars": [(p.get_x() + p.get_width() / 2, p.get_height()) for c in ax.containers
                     for p in c if hasattr(p, "get_width")],  # bars, not error bars
            "suptitle": fig._suptitle.get_text() if fig._suptitle else ""}
            for ax in fig.axes]
        return save(fig, path)

    monkeypatch.setattr(ebmlab.plots, "_save", recording_save)
    return figures


def test_density_of_anisotropic_data_keeps_a_sane_aspect(tmp_path, drawn):
    from ebmlab.energies import Gaussian

    wide = Gaussian([0.0, 0.0], [[9.0, 0.0], [0.0, 0.25]])  # sd 3 vs 0.5
    for name, bounds in (("wide.png", ((-12, 12), (-2, 2))), ("square.png", (-3, 3))):
        plot_density(wide, tmp_path / name, bounds, n_grid=40)
        main, bar = drawn[name]  # the density's axes, then the colour bar's
        assert bar["label"] == "<colorbar>"
        h = main["pos"][3]
        assert abs(bar["pos"][3] - h) < 0.05 * h  # the colour bar is as tall as the plot
        if name == "wide.png":  # 6:1: drawn at the widest allowed shape, scales unequal
            assert main["aspect"] == "auto" and "not to the same scale" in main["xlabel"]
        else:
            assert main["aspect"] == 1.0


def test_diagnosis_lags_in_iterations_and_panels_scaled_to_their_data(tmp_path, drawn):
    from ebmlab.plots import plot_diagnosis

    rng = np.random.default_rng(0)
    records = [{"iteration": 10 * (i + 1), "d_st": float(rng.normal(0, 0.05)),
                "r_t": float(0.2 + 0.01 * rng.normal())} for i in range(200)]
    plot_diagnosis(records, tmp_path / "diagnosis.png", sampler="svgd")
    panels = drawn["diagnosis.png"]
    assert "svgd" in panels[1]["title"] and "Langevin" not in panels[1]["title"]
    acf = panels[3]
    lags = [x for x, _ in acf["bars"]]
    assert lags[:3] == pytest.approx([10, 20, 30]) and acf["xlabel"] == "lag (iterations)"
    heights = [abs(v) for _, v in acf["bars"]]
    assert acf["ylim"][1] < 0.5 and acf["ylim"][1] >= max(heights)  # white noise: small, fits
    assert all(p["ylim"] != (-1.05, 1.05) for p in panels[3:])


def test_longrun_one_check_is_bars_with_the_reference_in_range(tmp_path, drawn):
    from ebmlab.plots import plot_longrun

    record = {"iteration": 600, "steps": 200, "kde_kl_reference": 0.27, "energy_reference": 1.5,
              "data": {"kde_kl": 0.9, "energy": 2.0, "mmd2": 0.01},
              "model": {"kde_kl": 40.0, "energy": -3.0, "mmd2": 0.2}}
    plot_longrun([record], tmp_path / "longrun.png")
    quality, energy = drawn["longrun.png"]
    assert [round(h, 3) for _, h in quality["bars"]] == [0.27, 0.9, 40.0]  # reference first
    assert quality["yscale"] == "log"  # 0.27 .. 40 spans > 30x
    assert [h for _, h in energy["bars"]] == [1.5, 2.0, -3.0]
    assert energy["ylim"][0] < -3.0 and energy["ylim"][1] > 2.0
    assert "600" in quality["title"]

    later = {**record, "iteration": 1200, "kde_kl_reference": 0.3,
             "data": {"kde_kl": 0.5, "energy": 1.0}, "model": {"kde_kl": 0.6, "energy": 1.0}}
    plot_longrun([record, later], tmp_path / "curves.png")
    quality, _ = drawn["curves.png"]
    assert quality["ylim"][0] <= 0.27 and quality["ylim"][1] >= 40.0


def test_run_figures_say_what_they_show(tmp_path, drawn):
    """An RBM's Gibbs chains are shown as E[x | h]; the exact KL / test LL is in the title."""
    from ebmlab.config import load_config
    from ebmlab.experiment import RunConfig
    from ebmlab.train import start_run

    root = Path(__file__).resolve().parents[1]
    quick = ["train.iterations=2", "train.progress=false", "train.plot_every=0",
             "train.longrun_factor=1"]
    rbm = start_run(load_config(RunConfig, path=root / "configs" / "steincd_digits.toml",
                                overrides=quick), tmp_path / "rbm")
    summary = rbm.fit()
    (title,) = [a["title"] for a in drawn["samples.png"]]
    assert title.startswith("E[x | h] of block-Gibbs chains") and "iteration 2" in title
    assert f"exact test log-lik. {summary['test_ll']:.4g} nats" in title

    toy = start_run(load_config(RunConfig, overrides=[*quick, "data.n_train=300",
                                                      "data.n_test=200"]), tmp_path / "toy")
    summary = toy.fit()
    density = drawn["density.png"][0]["title"]
    assert f"exact KL(p_data ‖ p_θ) = {summary['kl']:.4g} nats" in density
    assert not drawn["samples.png"][0]["title"].startswith("E[x | h]")  # MALA chains as they are

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

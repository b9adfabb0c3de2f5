"""The figures of a training run, written into its directory.

``density.png`` (learned density with data), ``samples.png`` (fresh samples of
the method's own generative process: short-run chains from noise or its generator,
over the density; a grid for image data, next to ``data.png``), ``diagnosis.png``
(d_st / r_t, see :func:`ebmlab.plots.plot_diagnosis`), ``longrun.png`` and, for image
data, ``quality.png`` (FID / KID over training) and ``longrun_<start>.png`` (grids of
the long-run chains, written by the long-run check).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ebmlab.plots import (
    plot_density,
    plot_diagnosis,
    plot_image_grid,
    plot_longrun,
    plot_quality,
)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a kill
    return out


def plot_run(out: Path, trainer: Any) -> list[Path]:
    """Write the run's figures from a live trainer (or a loaded run with the same fields)."""
    written = []
    data, method = trainer.data, trainer.method
    records = read_jsonl(out / "metrics.jsonl")
    if sum("d_st" in r for r in records) >= 2:
        written.append(plot_diagnosis(records, out / "diagnosis.png",
                                      title=f"{method.name}: learning diagnostics"))
    if any("fid" in r for r in records):
        written.append(plot_quality(records, out / "quality.png",
                                    title=f"{method.name}: image quality over training"))
    longrun = read_jsonl(out / "longrun.jsonl")
    if longrun:
        written.append(plot_longrun(longrun, out / "longrun.png"))
    gen = trainer.side_rng(2)
    if data.image_shape is not None:
        return written + _image_grids(out, trainer, gen)
    if data.dim != 2 or trainer.energy is None:
        return written
    energy = trainer.data_space_energy()
    test = data.to_data_space(data.test[:2000]).cpu()
    written.append(plot_density(energy, out / "density.png", bounds=data.bounds, data=test,
                                title=f"learned density, iteration {trainer.iteration}"))
    x, origin = trainer.model_samples(min(2000, data.test.shape[0]), gen)
    if x is not None:
        written.append(plot_density(
            energy, out / "samples.png", bounds=data.bounds,
            samples=data.to_data_space(x).cpu(),
            title=f"{origin}, iteration {trainer.iteration}"))
    return written


def _image_grids(out: Path, trainer: Any, gen: Any) -> list[Path]:
    """``data.png`` (test images) and ``samples.png`` (the method's samples) as grids."""
    data = trainer.data
    shape = data.image_shape
    written = [plot_image_grid(data.to_data_space(data.test[:64]).cpu(), out / "data.png",
                               image_shape=shape, value_range=(0.0, 1.0), title="test images")]
    x, origin = trainer.model_samples(64, gen)
    if x is not None:
        x = data.to_data_space(x).clamp(0, 1).cpu()
        written.append(plot_image_grid(
            x, out / "samples.png", image_shape=shape, value_range=(0.0, 1.0),
            title=f"{origin}, iteration {trainer.iteration}"))
    return written


__all__ = ["plot_run", "read_jsonl"]

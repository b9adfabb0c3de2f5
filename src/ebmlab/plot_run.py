"""The figures of a training run, written into its directory.

``density.png`` (learned density with data), ``samples.png`` (fresh samples of
the run's own sampler from its noise, over the density), ``diagnosis.png``
(d_st / r_t, see :func:`ebmlab.plots.plot_diagnosis`) and ``longrun.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ebmlab.plots import plot_density, plot_diagnosis, plot_longrun


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
    longrun = read_jsonl(out / "longrun.jsonl")
    if longrun:
        written.append(plot_longrun(longrun, out / "longrun.png"))
    if data.dim != 2:
        return written
    energy = trainer.data_space_energy()
    test = data.to_data_space(data.test[:2000]).cpu()
    written.append(plot_density(energy, out / "density.png", bounds=data.bounds, data=test,
                                title=f"learned density, iteration {trainer.iteration}"))
    gen = trainer.side_generator(2)
    x0 = method.noise_init(min(2000, data.test.shape[0]), gen)
    if x0 is not None and method.sampler is not None:
        steps = trainer.cfg.method.n_steps
        x = method.sampler.run(trainer.energy, x0, steps, generator=gen)
        written.append(plot_density(
            energy, out / "samples.png", bounds=data.bounds,
            samples=data.to_data_space(x).cpu(),
            title=f"short-run samples ({steps} steps from noise), iteration {trainer.iteration}"))
    return written


__all__ = ["plot_run", "read_jsonl"]

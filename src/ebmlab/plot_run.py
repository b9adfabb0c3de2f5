"""The figures of a training run, written into its directory.

``density.png`` (learned density with data; the exact KL in the title when known),
``samples.png`` (fresh samples of the method's own generative process: short-run chains
from noise or its generator, over the density, or over the data when the model has no
density; a grid for image data, next to ``data.png``; an RBM's block-Gibbs chains shown
as ``E[x | h]``), ``diagnosis.png`` (d_st / r_t, see :func:`ebmlab.plots.plot_diagnosis`),
``longrun.png`` (see :func:`ebmlab.plots.plot_longrun`) and, for image data,
``quality.png`` (FID / KID over training) and ``longrun_<start>.png`` (grids of the
long-run chains, written by the long-run check).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from ebmlab.capabilities import has_visible_mean
from ebmlab.plots import (
    plot_density,
    plot_diagnosis,
    plot_image_grid,
    plot_longrun,
    plot_quality,
    plot_samples,
)
from ebmlab.samplers.gibbs import GibbsSweeps


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


def evaluation_at(out: Path, trainer: Any) -> dict[str, Any]:
    """The exact evaluation of the model as it is now: the trainer's last one, or the
    run's ``summary.json``, when either is of the current iteration (else ``{}``)."""
    for source in (getattr(trainer, "last_evaluation", None), _summary(out)):
        if source and source.get("iteration") == trainer.iteration:
            return source
    return {}


def _summary(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def quality_text(evaluation: dict[str, Any]) -> str:
    """``exact KL = … nats`` (or the test NLL / LL) for a title; ``""`` when unknown."""
    if "kl" in evaluation:
        return f"exact KL(p_data ‖ p_θ) = {evaluation['kl']:.4g} nats"
    if "test_ll" in evaluation:
        return f"exact test log-lik. {evaluation['test_ll']:.4g} nats"
    if "nll" in evaluation:
        return f"test NLL {evaluation['nll']:.4g} nats"
    return ""


def shown_samples(trainer: Any, x: Tensor, origin: str, rng: Any = None) -> tuple[Tensor, str]:
    """What a figure of model samples ``x`` (standardised) shows, in data space, and its
    label: block-Gibbs chains of an energy with a visible mean (the RBM) as ``E[x | h]``
    (a draw ``x | h`` is that mean plus unit noise per pixel, which reads as
    salt-and-pepper noise); other samples as they are."""
    target = trainer.method.target()
    energy = trainer.energy
    if target is not None and isinstance(target.sampler, GibbsSweeps) \
            and has_visible_mean(energy):
        x = energy.visible_mean(x, rng).reshape(x.shape).to(x.dtype)
        origin = f"E[x | h] of block-Gibbs chains ({origin})"
    return trainer.data.to_data_space(x), origin


def plot_run(out: Path, trainer: Any) -> list[Path]:
    """Write the run's figures from a live trainer (or a loaded run with the same fields)."""
    written = []
    data, method = trainer.data, trainer.method
    quality = quality_text(evaluation_at(out, trainer))
    records = read_jsonl(out / "metrics.jsonl")
    if sum("d_st" in r and "r_t" in r for r in records) >= 2:  # MCMC-based learning
        sampler = trainer.cfg.samplers.get("negatives", {}).get("name")
        written.append(plot_diagnosis(records, out / "diagnosis.png", sampler=sampler,
                                      title=f"{method.name}: learning diagnostics"))
    if any("fid" in r for r in records):
        written.append(plot_quality(records, out / "quality.png",
                                    title=f"{method.name}: image quality over training"))
    longrun = read_jsonl(out / "longrun.jsonl")
    if longrun:
        written.append(plot_longrun(longrun, out / "longrun.png"))
    gen = trainer.side_rng(2)
    if data.image_shape is not None:
        return written + _image_grids(out, trainer, gen, quality)
    if data.dim != 2:
        return written
    if trainer.energy is None:  # no density (e.g. a GEBM whose base has a small latent)
        x, origin = trainer.model_samples(min(2000, data.test.shape[0]), gen)
        if x is not None:
            written.append(plot_samples(data.to_data_space(x).cpu(), out / "samples.png",
                                        data=data.to_data_space(data.test[:2000]).cpu(),
                                        bounds=data.bounds,
                                        title=f"{origin}, iteration {trainer.iteration}"))
        return written
    energy = trainer.data_space_energy()
    test = data.to_data_space(data.test[:2000]).cpu()
    title = f"learned density, iteration {trainer.iteration}"
    written.append(plot_density(energy, out / "density.png", bounds=data.bounds, data=test,
                                title=f"{title}\n{quality}" if quality else title))
    x, origin = trainer.model_samples(min(2000, data.test.shape[0]), gen)
    if x is not None:
        xd, origin = shown_samples(trainer, x, origin, gen)
        written.append(plot_density(
            energy, out / "samples.png", bounds=data.bounds, samples=xd.cpu(),
            title=f"{origin}, iteration {trainer.iteration}"))
    return written


def _image_grids(out: Path, trainer: Any, gen: Any, quality: str) -> list[Path]:
    """``data.png`` (test images) and ``samples.png`` (the method's samples) as grids."""
    data = trainer.data
    shape = data.image_shape
    written = [plot_image_grid(data.to_data_space(data.test[:64]).cpu(), out / "data.png",
                               image_shape=shape, value_range=(0.0, 1.0), title="test images")]
    x, origin = trainer.model_samples(64, gen)
    if x is not None:
        xd, origin = shown_samples(trainer, x, origin, gen)
        title = f"{origin}, iteration {trainer.iteration}"
        written.append(plot_image_grid(
            xd.clamp(0, 1).cpu(), out / "samples.png", image_shape=shape,
            value_range=(0.0, 1.0), title=f"{title}\n{quality}" if quality else title))
    return written


__all__ = ["evaluation_at", "plot_run", "quality_text", "read_jsonl", "shown_samples"]

"""What the trainer measures at the end of a run (and ``ebmlab eval``), chosen by what
the model offers. All numbers are in the user's data coordinates.

* :func:`exact_log_partition` — the model has an exact ``log Z``
  (:class:`ebmlab.capabilities.ExactLogPartition`, e.g. the RBM): ``log_z_exact``,
  mean ``test_ll`` / ``train_ll`` in nats per example.
* :func:`quadrature_2d` — 2-D data: ``log Z``, test NLL and, with a known data
  density, ``KL(p_data ‖ p_θ)`` by quadrature, with the model's mass outside the
  evaluation box measured and reported (``model_mass_outside``).
* :func:`importance_nll` — the model estimates its ``log Z`` by importance sampling
  (:class:`ebmlab.capabilities.ImportanceLogPartition`, a GEBM with a flow base):
  ``log_z_is`` and ``test_nll_is``, each with its standard error (``*_se``), in any
  dimension (in 2-D a check of the quadrature).
* :func:`test_energy` — otherwise the mean test energy.
* :func:`image_quality` — image data: FID and KID of the method's samples against the
  test split, in the feature space of ebmlab's own cached classifier
  (:mod:`ebmlab.evaluate.image_quality`), with the sample counts.
* :func:`long_run_check` — the method's own samples, ``longrun_factor`` × longer,
  from data (when chains live in data space) and from its own start.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ebmlab.capabilities import (
    ExactLogPartition,
    has_exact_log_partition,
    has_importance_log_partition,
)
from ebmlab.samplers import NonFiniteError

if TYPE_CHECKING:
    from ebmlab.evaluate.image_quality import FeatureSpace
    from ebmlab.train import Trainer


def exact_log_partition(trainer: Trainer) -> dict[str, Any]:
    """Exact log-likelihoods of an energy with an exact ``log_partition()``. In data
    coordinates ``log p_x(x) = log p_z(z) − Σ log scale``."""
    energy, data = trainer.energy, trainer.data
    if not isinstance(energy, nn.Module) or not isinstance(energy, ExactLogPartition):
        raise ValueError(f"method {trainer.method.name!r}: the energy has no exact log Z")
    jac = float(data.scale.double().log().sum())
    with torch.no_grad():
        log_z = float(energy.log_partition())

        def mean_ll(z: Tensor) -> float:
            return float((-energy(z).double()).mean()) - log_z - jac

        return {"log_z_exact": log_z + jac, "test_ll": mean_ll(data.test),
                "train_ll": mean_ll(data.train[:10000])}


def quadrature_2d(trainer: Trainer) -> dict[str, Any]:
    """log Z, test NLL and exact KL by quadrature on the data's box, accounting for the
    model's mass outside it."""
    from ebmlab.evaluate.exact2d import evaluate_2d

    data = trainer.data
    return evaluate_2d(trainer.data_space_energy(), data.log_density,
                       data.to_data_space(data.test), bounds=data.bounds)


IS_SAMPLES = 50_000  # importance samples for log Z: se ≈ sd(w)/(mean(w)·224)


def importance_nll(trainer: Trainer, n: int = IS_SAMPLES) -> dict[str, Any]:
    """Test NLL (nats per example, data coordinates) with ``log Z`` by importance sampling:
    ``NLL = mean U(x_test) + log Ẑ + Σ log scale``, its standard error
    ``√(var U / n_test + se(log Ẑ)²)`` (test sampling and the estimate of log Z)."""
    energy: Any = trainer.energy  # has_importance_log_partition (checked by the caller)
    data = trainer.data
    jac = float(data.scale.double().log().sum())
    log_z, log_z_se = energy.log_partition_is(n, trainer.side_rng(3))
    with torch.no_grad():
        u = torch.cat([energy(t).double() for t in data.test.split(4096)])
    nll = float(u.mean()) + log_z + jac
    se = math.sqrt(float(u.var()) / u.numel() + log_z_se**2) if u.numel() > 1 else log_z_se
    return {"log_z_is": log_z + jac, "log_z_is_se": log_z_se, "test_nll_is": nll,
            "test_nll_is_se": se}


def test_energy(trainer: Trainer) -> dict[str, Any]:
    """The mean energy of the test data (standardised coordinates)."""
    energy = trainer.energy
    if energy is None:
        raise ValueError(f"method {trainer.method.name!r} has no energy")
    with torch.no_grad():
        return {"energy_test": float(energy(trainer.data.test).mean())}


QUALITY_REFERENCE_MAX = 10000  # test images FID / KID compare with, at most
QUALITY_CHUNK = 500  # model samples drawn at a time


def feature_space_for(trainer: Trainer) -> FeatureSpace:
    """The run's data set's feature classifier (trained once, cached; kept on the trainer)."""
    from ebmlab.evaluate.image_quality import feature_space

    space = getattr(trainer, "_feature_space", None)
    if space is None:
        cfg = trainer.cfg.data
        space = feature_space(cfg.name, cfg.path, log=trainer.log)
        trainer._feature_space = space
    return space


def image_quality(trainer: Trainer, n: int | None = None) -> dict[str, Any]:
    """FID and KID of ``n`` (default ``train.quality_samples``) samples of the method's
    own generative process (:meth:`Method.sample`) against the test split (at most
    10,000 images), both in [0, 1] pixel units, in the feature space of the data set's
    classifier. Returns ``fid``, ``kid``, ``kid_sd`` (sd over KID subsets),
    ``quality_samples`` / ``quality_reference`` (the counts), ``quality_origin`` (how the
    samples were drawn), ``quality_seconds`` and ``classifier_test_accuracy``; ``{}``
    when the method cannot be sampled; ``quality_error`` when its chains fail."""
    from ebmlab.evaluate.image_quality import score_images

    data = trainer.data
    n = trainer.cfg.train.quality_samples if n is None else n
    if data.image_shape is None or n < 1 or trainer.method.target() is None:
        return {}
    space = feature_space_for(trainer)
    started = time.perf_counter()
    rng = trainer.side_rng(3)
    chunks, origin = [], ""
    try:
        for i in range(0, n, QUALITY_CHUNK):
            x, origin = trainer.model_samples(min(QUALITY_CHUNK, n - i), rng)
            assert x is not None
            chunks.append(data.to_data_space(x).cpu())
    except NonFiniteError as e:
        return {"quality_error": str(e)}
    samples = torch.cat(chunks)
    if not bool(torch.isfinite(samples).all()):
        return {"quality_error": "non-finite samples"}
    reference = data.to_data_space(data.test[:QUALITY_REFERENCE_MAX]).cpu()
    score = score_images(space, samples, reference)
    return {"fid": score["fid"], "kid": score["kid"], "kid_sd": score["kid_sd"],
            "quality_samples": score["n_samples"], "quality_reference": score["n_reference"],
            "quality_origin": origin,
            "quality_seconds": round(time.perf_counter() - started, 3),
            "classifier_test_accuracy": space.test_accuracy}


def evaluate(trainer: Trainer, quality_samples: int | None = None) -> dict[str, Any]:
    """Every evaluation the model allows, merged. ``quality_samples`` overrides
    ``train.quality_samples`` for image data (0: no FID / KID)."""
    result: dict[str, Any] = {"iteration": trainer.iteration}
    energy, data = trainer.energy, trainer.data
    if data.image_shape is not None:
        result.update(image_quality(trainer, quality_samples))
    if energy is None:
        return result
    if has_exact_log_partition(energy):
        result.update(exact_log_partition(trainer))
    if has_importance_log_partition(energy):
        result.update(importance_nll(trainer))
    if data.dim == 2 and data.bounds is not None:
        result.update(quadrature_2d(trainer))
    elif not (has_exact_log_partition(energy) or has_importance_log_partition(energy)):
        result.update(test_energy(trainer))
    return result


def long_run_check(trainer: Trainer) -> dict[str, Any]:
    """The method's samples with ``longrun_factor``× its usual chain length, from held-out
    data (when its chains live in data space) and from its own chain start.

    Records per start the mean energy, MMD² to held-out data and, with a known data
    density, ``kde_kl`` = KL(p_data ‖ KDE of the samples); compare it with
    ``kde_kl_reference``, the same estimator on as many held-out data points (the
    KDE's smoothing bias): samples as good as data give the same number; likewise
    ``energy_reference``, the mean energy of those held-out points. For image data
    (unless ``train.quality_samples = 0``) also ``fid`` / ``kid`` / ``kid_sd`` against the
    test split (``n`` samples per start), and the grids ``longrun_<start>.png``. A start
    whose chains become non-finite records ``{"error": ...}``.
    """
    from ebmlab.evaluate.mmd import mmd2
    from ebmlab.evaluate.sample_quality import kde_kl

    data, method = trainer.data, trainer.method
    target = method.target()
    record: dict[str, Any] = {"iteration": trainer.iteration}
    if target is None:
        return record
    steps = max(target.n_steps, 1) * trainer.cfg.train.longrun_factor
    record["steps"] = steps
    n = min(1000, data.test.shape[0])
    rng = trainer.side_rng(1)
    log_density, bounds = data.log_density, data.bounds
    if log_density is None or bounds is None:
        log_density = bounds = None  # KDE-KL needs both
    test = data.to_data_space(data.test[:n])
    images = data.image_shape is not None and trainer.cfg.train.quality_samples > 0
    if images:
        from ebmlab.evaluate.image_quality import score_images

        reference = data.to_data_space(data.test[:QUALITY_REFERENCE_MAX]).cpu()
        record["n"] = n
    if log_density is not None and bounds is not None:
        record["kde_kl_reference"] = kde_kl(log_density, test.cpu(), bounds)
    if trainer.energy is not None:
        with torch.no_grad():
            record["energy_reference"] = float(trainer.energy(data.test[:n]).mean())
    starts: dict[str, Tensor | None] = {"model": None}
    if target.decode is None:
        starts = {"data": data.test[:n], **starts}
    samples = {}
    for origin, x0 in starts.items():
        try:
            x, described = trainer.model_samples(n, rng, n_steps=steps, x0=x0,
                                                 start="held-out data")
        except NonFiniteError as e:
            record[origin] = {"error": str(e)}
            continue
        assert x is not None
        entry: dict[str, Any] = {"start": described}
        energy = trainer.energy
        if energy is not None:
            with torch.no_grad():
                entry["energy"] = float(energy(x).mean())
        xd = data.to_data_space(x)
        flat_xd, flat_test = xd.reshape(n, -1), test.reshape(n, -1)
        if not bool(torch.isfinite(flat_xd).all()):
            record[origin] = {"error": "non-finite samples"}
            continue
        entry["mmd2"] = mmd2(flat_xd, flat_test)
        if images:
            score = score_images(feature_space_for(trainer), xd.cpu(), reference)
            entry.update(fid=score["fid"], kid=score["kid"], kid_sd=score["kid_sd"])
            record["quality_reference"] = score["n_reference"]
        if log_density is not None and bounds is not None:
            entry["kde_kl"] = kde_kl(log_density, xd.cpu(), bounds)
        record[origin] = entry
        samples[origin] = (xd, described)
    if data.image_shape is not None:
        from ebmlab.plots import plot_image_grid

        for origin, (xd, described) in samples.items():
            plot_image_grid(xd[:64].clamp(0, 1).cpu(), trainer.out / f"longrun_{origin}.png",
                            image_shape=data.image_shape, value_range=(0.0, 1.0),
                            title=f"{described}, iteration {trainer.iteration}")
    if data.dim == 2 and trainer.energy is not None:
        from ebmlab.plots import plot_density

        for origin, (xd, described) in samples.items():
            plot_density(trainer.data_space_energy(), trainer.out / f"longrun_{origin}.png",
                         bounds=data.bounds, samples=xd.cpu(),
                         title=f"{described}, iteration {trainer.iteration}")
    return record

"""MCMC and particle samplers sharing one interface (see :mod:`ebmlab.samplers.base`)."""

from __future__ import annotations

import inspect
from typing import Any

from ebmlab.samplers.adaptation import DualAveraging
from ebmlab.samplers.base import (
    NonFiniteError,
    Sampler,
    SamplerState,
    StepInfo,
    drive,
    energy_and_grad,
)
from ebmlab.samplers.independent import IndependentMH
from ebmlab.samplers.langevin import AniLA, Langevin
from ebmlab.samplers.masked import MaskedEnergy, sample_masked
from ebmlab.samplers.metropolis import HMC, MALA
from ebmlab.samplers.svgd import SVGD
from ebmlab.samplers.underdamped import UnderdampedLangevin

SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls for cls in (Langevin, AniLA, MALA, HMC, UnderdampedLangevin, SVGD,
                             IndependentMH)
}


def make_sampler(name: str, **kwargs: Any) -> Sampler:
    """Build a sampler by registry name, e.g. ``make_sampler("mala", step_size=0.1)``."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    cls = SAMPLERS[name]
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(kwargs) - set(params) - {"self"})
    if unknown:
        valid = sorted(p for p in params if p != "self")
        raise ValueError(f"sampler {name!r} has no option {unknown[0]!r}; options: {valid}")
    return cls(**kwargs)


__all__ = [
    "HMC",
    "MALA",
    "IndependentMH",
    "SAMPLERS",
    "SVGD",
    "AniLA",
    "DualAveraging",
    "Langevin",
    "MaskedEnergy",
    "NonFiniteError",
    "Sampler",
    "SamplerState",
    "StepInfo",
    "UnderdampedLangevin",
    "drive",
    "energy_and_grad",
    "make_sampler",
    "sample_masked",
]

"""Energies ``U(x)``: callables mapping ``(B, *shape)`` to ``(B,)``; lower is more likely."""

from ebmlab.energies.analytic import AnalyticEnergy, Gaussian, GaussianMixture, Rings
from ebmlab.energies.mlp import ConvEnergy, MLPEnergy
from ebmlab.energies.rbm import GaussianBernoulliRBM
from ebmlab.energies.reference import GaussianReference

__all__ = [
    "AnalyticEnergy",
    "ConvEnergy",
    "Gaussian",
    "GaussianBernoulliRBM",
    "GaussianMixture",
    "GaussianReference",
    "MLPEnergy",
    "Rings",
]

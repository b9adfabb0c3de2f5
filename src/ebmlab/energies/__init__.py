"""Energies ``U(x)``: callables mapping ``(B, *shape)`` to ``(B,)``; lower is more likely."""

from ebmlab.energies.analytic import AnalyticEnergy, Gaussian, GaussianMixture, Rings
from ebmlab.energies.mlp import ConvEnergy, MLPEnergy

__all__ = ["AnalyticEnergy", "ConvEnergy", "Gaussian", "GaussianMixture", "MLPEnergy", "Rings"]

"""Generators ``G(ξ; η)``: latent noise ``ξ ~ N(0, I)`` to samples ``(B, *output_shape)``.

Shared by the amortized methods (SteinGAN, CoopNets, VALS, GEBM).
"""

from ebmlab.generators.base import Generator
from ebmlab.generators.deconv import DeconvGenerator
from ebmlab.generators.mlp import MLPGenerator

__all__ = ["DeconvGenerator", "Generator", "MLPGenerator"]

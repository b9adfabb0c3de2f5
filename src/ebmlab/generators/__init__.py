"""Generators ``G(ξ; η)``: latent noise ``ξ ~ N(0, I)`` to samples ``(B, *output_shape)``.

Shared by the amortized methods (SteinGAN, CoopNets, VALS, GEBM). ``FlowGenerator``
(optional extra ``ebmlab[flow]``) also has an exact density ``log_prob(x)``.
"""

from ebmlab.generators.base import Generator
from ebmlab.generators.deconv import DeconvGenerator
from ebmlab.generators.flow import FlowGenerator
from ebmlab.generators.mlp import MLPGenerator

__all__ = ["DeconvGenerator", "FlowGenerator", "Generator", "MLPGenerator"]

"""Generators ``G(ξ; η)``: latent noise ``ξ ~ N(0, I)`` to samples ``(B, *output_shape)``,
Gaussian encoders ``π(z | x)`` (VALS) and a generator's latent posterior as an energy
(CoopNets' inference).

Shared by the amortized methods (SteinGAN, CoopNets, VALS, GEBM). ``FlowGenerator``
(optional extra ``ebmlab[flow]``) also has an exact density ``log_prob(x)``.
"""

from ebmlab.generators.base import Generator
from ebmlab.generators.deconv import DeconvGenerator
from ebmlab.generators.encoder import ConvEncoder, GaussianEncoder, MLPEncoder, kl_standard_normal
from ebmlab.generators.flow import FlowGenerator
from ebmlab.generators.mlp import MLPGenerator
from ebmlab.generators.posterior import GeneratorPosterior

__all__ = ["ConvEncoder", "DeconvGenerator", "FlowGenerator", "GaussianEncoder", "Generator",
           "GeneratorPosterior", "MLPEncoder", "MLPGenerator", "kl_standard_normal"]

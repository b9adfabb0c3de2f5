"""A normalising flow trained by maximum likelihood (``method.name = "flow"``): the
baseline of the GEBM paper's density-estimation comparison ("GEBM performs similarly to
MLE"), and a density model in its own right.

The base ``g_θ`` of ``[generator]`` (``name = "flow"``, the extra ``ebmlab[flow]``)
minimises the negative log-likelihood ``−mean log g_θ(x)`` of each data batch; its energy
is ``U(x) = −log g_θ(x)`` (``Z = 1``): exact test log-likelihoods in any dimension, and
every exact 2-D tool. Samples are exact:
``x = G_θ(z)``, ``z ~ N(0, I)``. The :class:`SamplingTarget` runs independent
Metropolis–Hastings with proposal ``N(0, I)`` on the latent energy ``½‖z‖²`` — every
proposal is accepted, so chains of any length are i.i.d. exact draws — and decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ebmlab.chains import NoiseInit
from ebmlab.config import ConfigError
from ebmlab.generators import FlowGenerator
from ebmlab.methods.base import Batch, Method, SamplingTarget, StepOutput, batch_x
from ebmlab.methods.registry import MethodOptions, MethodSpec, register
from ebmlab.samplers.independent import IndependentMH

if TYPE_CHECKING:
    from ebmlab.experiment import BuildContext


class StandardNormalEnergy(nn.Module):
    """``½‖z‖²``: the latent prior ``N(0, I)``."""

    def forward(self, z: Tensor) -> Tensor:
        return 0.5 * z.reshape(z.shape[0], -1).square().sum(dim=1)


class NegativeLogDensity(nn.Module):
    """``U(x) = −log g(x)`` of a model with ``log_prob``."""

    def __init__(self, model: FlowGenerator) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return -self.model.log_prob(x)

    def log_partition(self) -> float:
        """``log Z = 0``: a flow's density is normalised (exact log-likelihoods in any
        dimension, :class:`ebmlab.capabilities.ExactLogPartition`)."""
        return 0.0


class FlowMLE(Method):
    """Maximum likelihood for a flow generator (one parameter group, ``base``)."""

    name = "flow"

    def __init__(self, base: nn.Module) -> None:
        if not isinstance(base, FlowGenerator):
            raise ValueError("method 'flow' needs a base with a density (generator.name = "
                             "'flow')")
        self.base = base
        p = next(base.parameters())
        self.density = NegativeLogDensity(base)
        self.init = NoiseInit(base.latent_dim, kind="gaussian", scale=1.0, dtype=p.dtype,
                              device=p.device)

    def modules(self) -> dict[str, nn.Module]:
        return {"base": self.base}

    def energy_model(self) -> nn.Module:
        return self.density

    def target(self) -> SamplingTarget:
        return SamplingTarget(StandardNormalEnergy(), IndependentMH(1.0), self.init, 0,
                              decode=self.base, origin="z ~ N(0, I), decoded by the flow")

    def step(self, batch: Batch, rng: torch.Generator | None = None) -> StepOutput:
        x = batch_x(batch)
        nll = -self.base.log_prob(x).mean()
        return StepOutput(losses={"base": nll}, metrics={"nll": float(nll.detach())})


@dataclass
class FlowOptions(MethodOptions):
    pass


def build_flow(ctx: BuildContext, opts: FlowOptions) -> FlowMLE:
    if ctx.cfg.generator is None or ctx.cfg.generator.name != "flow":
        raise ConfigError("method.name = 'flow' needs generator.name = 'flow'")
    return FlowMLE(ctx.generator())


register(MethodSpec("flow", FlowOptions, build_flow, groups=("base",), sections=("generator",),
                    help="a normalising flow trained by maximum likelihood (generator.name = "
                    "'flow', the extra ebmlab[flow]); exact density and samples"))

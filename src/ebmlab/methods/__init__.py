"""Learning methods sharing one interface (see :mod:`ebmlab.methods.base`), registered by
name in :data:`METHODS` (see :mod:`ebmlab.methods.registry`). Each import below registers
the methods of one file."""

from ebmlab.methods.base import Batch, Method, SamplingTarget, StepOutput, batch_x
from ebmlab.methods.coop import VALS, AncestralLangevin, CoopNets
from ebmlab.methods.coop_conditional import ConditionalCoopNets, ConditionalVALS
from ebmlab.methods.flow import FlowMLE
from ebmlab.methods.gebm import GEBM
from ebmlab.methods.mle import REGIMES, MaximumLikelihood
from ebmlab.methods.registry import METHODS, MethodOptions, MethodSpec, method_spec, register
from ebmlab.methods.stein import SteinCD, SteinGAN

__all__ = ["GEBM", "METHODS", "REGIMES", "VALS", "AncestralLangevin", "Batch",
           "ConditionalCoopNets", "ConditionalVALS", "CoopNets",
           "FlowMLE", "MaximumLikelihood", "Method", "MethodOptions", "MethodSpec",
           "SamplingTarget", "SteinCD", "SteinGAN", "StepOutput", "batch_x", "method_spec",
           "register"]

"""Learning methods sharing one interface (see :mod:`ebmlab.methods.base`)."""

from ebmlab.methods.base import Method, StepOutput
from ebmlab.methods.mle import REGIMES, MaximumLikelihood
from ebmlab.methods.stein import SteinCD, SteinGAN

__all__ = ["REGIMES", "MaximumLikelihood", "Method", "SteinCD", "SteinGAN", "StepOutput"]

"""Learning methods sharing one interface (see :mod:`ebmlab.methods.base`)."""

from ebmlab.methods.base import Method, StepOutput
from ebmlab.methods.mle import REGIMES, MaximumLikelihood

__all__ = ["REGIMES", "MaximumLikelihood", "Method", "StepOutput"]

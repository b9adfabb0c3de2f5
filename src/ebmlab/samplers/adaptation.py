"""Dual-averaging step-size adaptation (Hoffman & Gelman 2014, NUTS paper, Alg. 5).

During the first ``n_steps`` transitions the step size follows

    H̄ₜ = (1 − 1/(t+t₀)) H̄ₜ₋₁ + (δ − αₜ)/(t+t₀),   log εₜ = μ − (√t/γ) H̄ₜ,
    log ε̄ₜ = t^(−κ) log εₜ + (1 − t^(−κ)) log ε̄ₜ₋₁,

with αₜ the mean acceptance probability over chains and δ the target; after
that the averaged ε̄ is frozen, so the chain is again an exact MCMC kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class DualAveragingState:
    t: int
    h_bar: float
    log_step: float
    log_step_bar: float
    mu: float

    @property
    def step_size(self) -> float:
        return math.exp(self.log_step)


@dataclass(frozen=True)
class DualAveraging:
    """Adapt a step size toward ``target_accept`` for ``n_steps`` steps, then freeze it."""

    target_accept: float
    n_steps: int
    gamma: float = 0.05
    t0: float = 10.0
    kappa: float = 0.75

    def __post_init__(self) -> None:
        if not 0.0 < self.target_accept < 1.0:
            raise ValueError(f"target_accept must be in (0, 1), got {self.target_accept!r}")
        if isinstance(self.n_steps, bool) or not isinstance(self.n_steps, int) or self.n_steps < 0:
            raise ValueError(f"adapt_steps must be an integer >= 0, got {self.n_steps!r}")

    def init(self, step_size: float) -> DualAveragingState:
        log_eps = math.log(step_size)
        return DualAveragingState(0, 0.0, log_eps, log_eps, math.log(10 * step_size))

    def update(self, s: DualAveragingState, accept_prob: float) -> DualAveragingState:
        """One adaptation step; past ``n_steps`` returns the frozen averaged step."""
        if s.t >= self.n_steps:
            return s
        t = s.t + 1
        eta = 1.0 / (t + self.t0)
        h_bar = (1 - eta) * s.h_bar + eta * (self.target_accept - accept_prob)
        log_step = s.mu - math.sqrt(t) / self.gamma * h_bar
        w = t ** (-self.kappa)
        log_step_bar = w * log_step + (1 - w) * s.log_step_bar
        if t == self.n_steps:  # adaptation over: freeze the averaged step
            log_step = log_step_bar
        return DualAveragingState(t, h_bar, log_step, log_step_bar, s.mu)

"""Detecting learning that runs away, from the Anatomy paper's diagnostics.

The Anatomy paper (Sec. 3–4) reads stability off ``d_st = mean U(x⁺) − mean U(x⁻)``:
stable maximum-likelihood learning keeps ``d_st`` oscillating around 0 because the
update itself pushes it back (a too-low data energy raises the negatives' and vice
versa). Learning that diverges breaks that feedback: ``d_st`` stays on one side and
the energies' scale grows by orders of magnitude (a user run on unseen data went from
energies of order 1 to 1e11, with ``d_st`` falling to −7 and staying there).

:class:`DivergenceMonitor` watches, over windows of ``window`` iterations:

* **energy scale** ``s = median over the window of max(|mean U⁺|, |mean U⁻|, |d_st|)``
  against the smallest window scale seen so far, floored at ``floor`` (energies of a
  freshly initialised network are O(0.1)): it trips when ``s`` exceeds
  ``growth × reference``. Energies are defined up to a constant, so a slow drift of the
  offset is harmless; a growth by ``growth`` (default 1000) within a run is not.
* **one-sided d_st**: ``|median d_st| > d_st_limit × sd`` while at least ``one_sided``
  of the window's ``d_st`` share its sign, ``sd`` the smallest window median of
  ``energy_sd`` (the spread of ``U`` over a data batch, floored at ``floor``): the
  negatives sit several data-energy spreads away from the data. ``sd`` is invariant to
  the energy's arbitrary offset and scales with the data's dimension, so one limit
  serves 2-D toys and images. Only for methods whose negatives are MCMC samples of the
  model (``Method.d_st_settles``): a generator's negatives (SteinGAN) lag the energy and
  keep ``d_st`` one-sided by design. The rule is armed once ``d_st`` has changed sign:
  learning from noise starts one-sided (the network first learns to tell data from noise;
  on images that phase lasts a few hundred iterations with ``|d_st|`` many spreads
  large) and only then reaches the oscillating regime that the rule protects.

Measured (``bench/defaults.py`` trajectories): healthy runs keep the 100-iteration
median ``|d_st|`` below 0.4 and ``max |U|`` below 50 (its offset may drift by tens);
runs that diverge (Langevin too coarse for a thin structure) pass ``|U|`` = 50 and then
1e3 within ~40 iterations and 1e6 within ~100, with ``d_st`` one-sided throughout.

``status()`` returns ``None`` while healthy, else a one-line description naming the
diagnostic. :meth:`suspicious` (half the thresholds) tells the trainer not to write a
checkpoint it might later have to roll back to, and a run that ends suspicious has not
settled: the trainer reports it instead of exiting as if all were well.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DivergenceMonitor:
    window: int = 100
    growth: float = 1000.0
    floor: float = 1.0
    d_st_limit: float = 5.0
    one_sided: float = 0.9
    check_d_st: bool = True  # False for methods whose negatives are amortized
    _d_st: deque = field(default_factory=deque, repr=False)
    _scale: deque = field(default_factory=deque, repr=False)
    _sd: deque = field(default_factory=deque, repr=False)
    reference: float = math.inf
    reference_sd: float = math.inf
    seen: int = 0
    armed: bool = False  # d_st has changed sign at least once

    def update(self, metrics: dict[str, float]) -> None:
        d_st = metrics.get("d_st")
        if d_st is None:
            return
        scale = max(abs(d_st), abs(metrics.get("energy_pos", 0.0)),
                    abs(metrics.get("energy_neg", 0.0)))
        if self._d_st and (d_st > 0) != (self._d_st[-1] > 0):
            self.armed = True
        self._d_st.append(d_st)
        self._scale.append(scale)
        self._sd.append(abs(metrics.get("energy_sd", 0.0)))
        self.seen += 1
        if len(self._d_st) > self.window:
            self._d_st.popleft()
            self._scale.popleft()
            self._sd.popleft()
        if len(self._scale) == self.window and self.seen % self.window == 0:
            self.reference = min(self.reference, max(self.floor, self.window_scale()))
            self.reference_sd = min(self.reference_sd,
                                    max(self.floor, statistics.median(self._sd)))

    def window_scale(self) -> float:
        return statistics.median(self._scale) if self._scale else 0.0

    def _check(self, factor: float) -> str | None:
        if len(self._d_st) < self.window:
            return None
        scale = self.window_scale()
        reference = self.reference if math.isfinite(self.reference) else self.floor
        if scale > self.growth * factor * reference:
            return (f"energy scale grew {scale / reference:.3g}x (median max|U| over the last "
                    f"{self.window} iterations {scale:.3g}, smallest earlier {reference:.3g})")
        if not self.check_d_st or not self.armed:
            return None
        med = statistics.median(self._d_st)
        same = sum((d > 0) == (med > 0) for d in self._d_st) / len(self._d_st)
        sd = self.reference_sd if math.isfinite(self.reference_sd) else max(
            self.floor, statistics.median(self._sd))
        if abs(med) > self.d_st_limit * factor * sd and same >= self.one_sided:
            return (f"d_st stuck at {med:.3g} (one sign in {same:.0%} of the last {self.window} "
                    f"iterations, {abs(med) / sd:.3g}x the data's energy spread; stable "
                    "learning oscillates around 0)")
        return None

    def status(self) -> str | None:
        """``None`` while learning looks stable, else what tripped."""
        return self._check(1.0)

    def unsettled(self) -> str | None:
        """Half-way to a trip (``None`` if not): do not trust a checkpoint written now, nor
        a model that ends this way."""
        return self._check(0.5)

    def suspicious(self) -> bool:
        return self.unsettled() is not None

    def reset(self) -> None:
        """Forget the current window (after a rollback); the reference scale is kept."""
        self._d_st.clear()
        self._scale.clear()
        self._sd.clear()

    def state_dict(self) -> dict[str, Any]:
        def finite(v: float) -> float:
            return v if math.isfinite(v) else -1.0

        return {"reference": finite(self.reference), "reference_sd": finite(self.reference_sd),
                "seen": self.seen, "armed": self.armed, "d_st": list(self._d_st),
                "scale": list(self._scale), "sd": list(self._sd)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def value(key: str) -> float:
            v = float(state.get(key, -1.0))
            return math.inf if v < 0 else v

        self.reference, self.reference_sd = value("reference"), value("reference_sd")
        self.seen = int(state.get("seen", 0))
        self.armed = bool(state.get("armed", True))
        self._d_st = deque(float(v) for v in state.get("d_st", []))
        self._scale = deque(float(v) for v in state.get("scale", []))
        self._sd = deque(float(v) for v in state.get("sd", []))

"""Sampler diagnostics: ESS, split-R̂, MCSE, acceptance rates and a trace recorder.

Two families: the classic split-R̂ and ESS of the mean (BDA3), and the rank-normalised
split-R̂ and bulk / tail ESS of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021,
"Rank-normalization, folding, and localization: an improved R̂", Bayesian Analysis),
which Stan, posterior and ArviZ report today: they work for heavy tails and infinite
variance and also see chains that differ in scale, not only in location.

Draws are arrays ``(n_draws, n_chains, *dims)`` (numpy or torch; what
``sampler.trajectory`` returns); a 1-D array is one chain. Results are numpy
``float64`` arrays of shape ``dims`` (0-d for scalar draws), computed for all
dims at once.

Notation (BDA3 §11.4–11.5, Stan reference manual): ``M`` chains of ``N``
draws, chain means ``x̄ₘ`` and variances ``sₘ²``; within-chain variance
``W = meanₘ sₘ²``, between-chain variance ``B/N = varₘ x̄ₘ`` and the pooled
posterior-variance estimate ``var⁺ = (N−1)/N·W + B/N``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from ebmlab.samplers.base import SamplerState, StepInfo

ArrayLike = Any  # numpy array, torch tensor, or nested sequences of numbers

_BLOCK_ELEMS = 1 << 23  # complex FFT entries per block (~128 MiB), bounds memory over dims


def _as_draws(samples: ArrayLike) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(N, M, D)`` float64 array and the trailing ``dims``."""
    if isinstance(samples, Tensor):
        arr = samples.detach().to("cpu", torch.float64).numpy()
    else:
        arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim == 0:
        raise ValueError("samples must have shape (n_draws, n_chains, *dims) or (n_draws,)")
    if arr.ndim == 1:
        arr = arr[:, None]
    n, m = arr.shape[:2]
    if n < 4 or m < 1:
        raise ValueError(f"samples need n_draws >= 4 and n_chains >= 1, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("samples contain NaN or infinite values")
    dims = tuple(arr.shape[2:])
    return arr.reshape(n, m, -1), dims


def _split(x: np.ndarray) -> np.ndarray:
    """BDA3 split chains: each chain's first and last halves become two chains
    (the middle draw is dropped when ``N`` is odd)."""
    half = x.shape[0] // 2
    return np.concatenate((x[:half], x[x.shape[0] - half:]), axis=1)


def _ess_block(x: np.ndarray) -> np.ndarray:
    """ESS of ``(N, M, D)`` draws, per dim (Stan's estimator, vectorised)."""
    n, m, _ = x.shape
    chain_mean = x.mean(axis=0)
    xc = x - chain_mean
    # Autocovariance of every chain by FFT (zero-padded to avoid wrap-around),
    # averaged over chains: meanₘ γ̂ₘ(t) with the biased 1/N normalisation.
    nfft = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(xc, n=nfft, axis=0)
    power = (f.real**2 + f.imag**2).mean(axis=1)
    acov = np.fft.irfft(power, n=nfft, axis=0)[:n] / n
    w = (xc**2).sum(axis=0).mean(axis=0) / (n - 1)
    var_plus = w * (n - 1) / n
    if m > 1:
        var_plus = var_plus + chain_mean.var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # ρ̂ₜ = 1 − (W − meanₘ γ̂ₘ(t)) / var⁺, ρ̂₀ = 1.
        rho = 1.0 - (w - acov) / var_plus
        rho[0] = 1.0
        # Geyer: pair sums Γₖ = ρ̂₂ₖ + ρ̂₂ₖ₊₁, kept while positive (initial positive
        # sequence), made monotone by a running minimum (initial monotone sequence).
        # Stan, posterior and ArviZ look at the pairs k < K = ⌊(N−1)/2⌋ (the last lags
        # are too noisy) and sum at most K − 1 of them.
        k = max((n - 1) // 2, 1)
        gamma = rho[0:2 * k:2] + rho[1:2 * k:2]
        keep = np.cumprod(gamma > 0, axis=0).astype(bool)
        n_kept = np.minimum(keep.sum(axis=0), k - 1)
        keep &= np.arange(k)[:, None] < n_kept[None]
        gamma = np.minimum.accumulate(gamma, axis=0) * keep
        # τ̂ = −1 + 2 Σₖ Γₖ, plus the next even ρ̂ when positive (Stan ≥ 2.18).
        tau = -1.0 + 2.0 * gamma.sum(axis=0)
        nxt = np.take_along_axis(rho, np.minimum(2 * n_kept, n - 1)[None], axis=0)[0]
        tau = tau + np.maximum(nxt, 0.0)
        # Antithetic chains: cap ESS at N·M·log10(N·M), as Stan does.
        tau = np.maximum(tau, 1.0 / math.log10(n * m))
        ess = n * m / tau
    return np.where(var_plus > 0, ess, np.nan)


def effective_sample_size(samples: ArrayLike, *, split: bool = True) -> np.ndarray:
    """Multi-chain effective sample size per dim (Stan / BDA3 §11.5).

    ``ESS = N·M / τ̂`` with ``τ̂ = 1 + 2 Σₜ ρ̂ₜ``, where the autocorrelations
    ``ρ̂ₜ = 1 − (W − meanₘ γ̂ₘ(t)) / var⁺`` combine the chains' FFT
    autocovariances ``γ̂ₘ(t)`` with the between/within variances (so chains
    stuck in different places lower the ESS), and the sum is truncated by
    Geyer's initial monotone positive sequence. ``split=True`` (default)
    first splits each chain in halves, as BDA3 and Stan do. NaN for constant dims.
    """
    x, dims = _as_draws(samples)
    return _ess_of(_split(x) if split else x).reshape(dims)


def split_rhat(samples: ArrayLike) -> np.ndarray:
    """Split-R̂ per dim (BDA3 §11.4): ``R̂ = √(var⁺ / W)`` over the 2M half-chains.

    ≈ 1 when the chains mix; > 1.01–1.1 flags chains that disagree (different
    means, or drifts within a chain, which splitting exposes). NaN for constant dims.
    """
    x, dims = _as_draws(samples)
    x = _split(x)
    n = x.shape[0]
    w = x.var(axis=0, ddof=1).mean(axis=0)
    b_over_n = x.mean(axis=0).var(axis=0, ddof=1)
    var_plus = (n - 1) / n * w + b_over_n
    with np.errstate(divide="ignore", invalid="ignore"):
        rhat = np.sqrt(var_plus / w)
    return np.where(w > 0, rhat, np.nan).reshape(dims)


# -- rank-normalised diagnostics (Vehtari et al. 2021) ------------------------------------


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..S of each column of ``(S, D)`` values, ties sharing their average rank."""
    ranks = np.empty_like(x)
    for j in range(x.shape[1]):
        _, inverse, counts = np.unique(x[:, j], return_inverse=True, return_counts=True)
        ends = np.cumsum(counts)
        ranks[:, j] = (ends - (counts - 1) / 2.0)[inverse]
    return ranks


def rank_normalize(samples: ArrayLike) -> np.ndarray:
    """Rank-normalised draws ``z = Φ⁻¹((r − 3/8) / (S + 1/4))`` (Vehtari et al. 2021,
    Eq. 14): ``r`` the rank of a draw among all ``S = N·M`` draws of its dim (ties get
    their average rank), ``Φ⁻¹`` the standard normal quantile (Blom's offsets)."""
    x, dims = _as_draws(samples)
    n, m, d = x.shape
    r = _average_ranks(x.reshape(n * m, d))
    p = torch.from_numpy((r - 0.375) / (n * m + 0.25))
    z = torch.special.ndtri(p).numpy()
    return z.reshape(n, m, *dims)


def _rhat_of(x: np.ndarray) -> np.ndarray:
    """``√(var⁺ / W)`` of ``(N, M, D)`` draws (no splitting here)."""
    n = x.shape[0]
    w = x.var(axis=0, ddof=1).mean(axis=0)
    var_plus = (n - 1) / n * w + x.mean(axis=0).var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(w > 0, np.sqrt(var_plus / w), np.nan)


def rank_normalized_rhat(samples: ArrayLike) -> np.ndarray:
    """Rank-normalised split-R̂ per dim (Vehtari et al. 2021, Sec. 4.2): the larger of
    the *bulk* R̂ (split-R̂ of the rank-normalised split chains) and the *tail* R̂ (the
    same of the draws folded about their median, ``|x − median|``, which exposes chains
    that differ in scale). Use it with a threshold of 1.01. Needs ≥ 2 chains after
    splitting (any ``n_chains ≥ 1``)."""
    x, dims = _as_draws(samples)
    xs = _split(x)
    bulk = _rhat_of(rank_normalize(xs).reshape(xs.shape))
    folded = np.abs(xs - np.median(xs.reshape(-1, xs.shape[2]), axis=0))
    tail = _rhat_of(rank_normalize(folded).reshape(xs.shape))
    return np.fmax(bulk, tail).reshape(dims)


def _ess_of(x: np.ndarray) -> np.ndarray:
    """ESS of ``(N, M, D)`` draws (no splitting here), per dim."""
    n, m, d = x.shape
    nfft = 1 << (2 * n - 1).bit_length()
    block = max(1, _BLOCK_ELEMS // (nfft * m))
    return np.concatenate([_ess_block(x[:, :, j:j + block]) for j in range(0, d, block)])


def ess_bulk(samples: ArrayLike) -> np.ndarray:
    """Bulk effective sample size per dim (Vehtari et al. 2021, Sec. 4.3): the ESS of the
    rank-normalised split chains; how well the centre of the distribution is explored, and
    defined for heavy tails where the ESS of the mean is not."""
    x, dims = _as_draws(samples)
    xs = _split(x)
    return _ess_of(rank_normalize(xs).reshape(xs.shape)).reshape(dims)


def ess_tail(samples: ArrayLike, probs: tuple[float, float] = (0.05, 0.95)) -> np.ndarray:
    """Tail effective sample size per dim (Vehtari et al. 2021, Sec. 4.3): the smaller ESS
    of the indicators ``I(x ≤ q₀.₀₅)`` and ``I(x ≤ q₀.₉₅)`` (split chains; quantiles of all
    draws, linear interpolation), i.e. how well the 5 % and 95 % quantiles are estimated."""
    x, dims = _as_draws(samples)
    flat = x.reshape(-1, x.shape[2])
    out = []
    for p in probs:
        if not 0.0 < p < 1.0:
            raise ValueError(f"probs must lie in (0, 1), got {probs!r}")
        q = np.quantile(flat, p, axis=0)
        out.append(_ess_of(_split((x <= q).astype(np.float64))))
    return np.fmin(*out).reshape(dims) if len(out) == 2 else out[0].reshape(dims)


def mcse_mean(samples: ArrayLike, *, split: bool = True) -> np.ndarray:
    """Monte-Carlo standard error of the mean per dim: ``sd / √ESS``.

    ``sd`` is the standard deviation over all ``N·M`` draws; ESS from
    :func:`effective_sample_size`.
    """
    x, dims = _as_draws(samples)
    sd = x.reshape(-1, x.shape[2]).std(axis=0, ddof=1).reshape(dims)
    return sd / np.sqrt(effective_sample_size(samples, split=split))


def summarize(samples: ArrayLike) -> dict[str, np.ndarray]:
    """``mean``, ``sd``, ``mcse`` (of the mean), ``ess`` and ``rhat`` (classic), and
    ``ess_bulk``, ``ess_tail`` and ``rhat_rank`` (rank-normalised), per dim."""
    x, dims = _as_draws(samples)
    flat = x.reshape(-1, x.shape[2])
    ess = effective_sample_size(samples)
    sd = flat.std(axis=0, ddof=1).reshape(dims)
    return {
        "mean": flat.mean(axis=0).reshape(dims),
        "sd": sd,
        "mcse": sd / np.sqrt(ess),
        "ess": ess,
        "rhat": split_rhat(samples),
        "ess_bulk": ess_bulk(samples),
        "ess_tail": ess_tail(samples),
        "rhat_rank": rank_normalized_rhat(samples),
    }


# -- acceptance ----------------------------------------------------------------------------


def _accept_tensor(item: Any) -> Tensor:
    if hasattr(item, "accept_prob") and hasattr(item, "accepted"):  # a StepInfo
        t = item.accept_prob if item.accept_prob is not None else item.accepted
        if t is None:
            raise ValueError("infos carry no acceptance (an unadjusted sampler?)")
        return t
    if isinstance(item, Tensor):
        return item
    return torch.as_tensor(np.asarray(item, dtype=np.float64))


def acceptance_rate(
    infos: StepInfo | ArrayLike | Iterable[StepInfo | ArrayLike], *, per_chain: bool = False
) -> float | np.ndarray:
    """Mean acceptance over steps and chains.

    ``infos``: one :class:`~ebmlab.samplers.base.StepInfo` or a sequence of them
    (their ``accept_prob``, the Rao–Blackwellised rate, else ``accepted``), or
    acceptance tensors/arrays: bool (accepted) or float (probabilities), each
    ``(B,)`` for one step or ``(T, B)`` for ``T`` steps. ``per_chain=True``
    returns the ``(B,)`` rate of each chain instead.
    """
    items: list[Any]
    if isinstance(infos, (Tensor, np.ndarray)) or hasattr(infos, "accept_prob"):
        items = [infos]
    else:
        items = list(cast(Iterable[Any], infos))
    if not items:
        raise ValueError("infos is empty")
    rows = []
    for item in items:
        t = _accept_tensor(item).detach()
        rows.append(t.reshape(1, -1) if t.dim() <= 1 else t.reshape(-1, t.shape[-1]))
    dev = rows[0].device
    if per_chain:
        if len({r.shape[1] for r in rows}) != 1:
            raise ValueError("per_chain needs the same number of chains at every step")
        rates = torch.cat([r.to(dev, torch.float32) for r in rows]).mean(dim=0)
        return rates.to("cpu", torch.float64).numpy()
    total = sum(float(r.to(dev, torch.float32).sum()) for r in rows)
    count = sum(r.numel() for r in rows)
    if count == 0:
        raise ValueError("infos hold no acceptance values")
    return total / count


# -- trace recording -----------------------------------------------------------------------


class TraceRecorder:
    """Sampler callback recording chain-averaged traces; pass ``callback=rec`` to ``run``.

    Every ``every`` steps (``i % every == 0``) it stores the step index, the
    mean over chains of the energy, of the gradient norm ‖∇U‖ (as the sampler
    used it, i.e. after ``grad_clip``), of the acceptance probability (when the
    sampler reports one) and the step size (when reported), plus the states
    of the first ``keep_chains`` chains after the step. Values stay on the
    sampler's device until :meth:`as_dict` (no device sync per step). Calls
    accumulate across runs; :meth:`reset` clears.
    """

    def __init__(self, every: int = 1, keep_chains: int = 0) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        if isinstance(keep_chains, bool) or not isinstance(keep_chains, int) or keep_chains < 0:
            raise ValueError(f"keep_chains must be an integer >= 0, got {keep_chains!r}")
        self.every = every
        self.keep_chains = keep_chains
        self.reset()

    def reset(self) -> None:
        self._step: list[int] = []
        self._energy: list[Tensor] = []
        self._grad_norm: list[Tensor] = []
        self._accept: list[Tensor | None] = []
        self._step_size: list[float | None] = []
        self._states: list[Tensor] = []

    def __len__(self) -> int:
        return len(self._step)

    def __call__(self, i: int, state: SamplerState, info: StepInfo) -> None:
        if i % self.every:
            return
        self._step.append(int(i))
        self._energy.append(info.energy.detach().mean())
        self._grad_norm.append(info.grad_norm.detach().mean())
        ap = info.accept_prob
        self._accept.append(None if ap is None else ap.detach().float().mean())
        self._step_size.append(None if info.step_size is None else float(info.step_size))
        if self.keep_chains:
            self._states.append(state.x[: self.keep_chains].detach().clone())

    @staticmethod
    def _np(ts: list[Tensor]) -> np.ndarray:
        return torch.stack([t.to("cpu", torch.float64) for t in ts]).numpy()

    def as_dict(self) -> dict[str, np.ndarray]:
        """``step``, ``energy``, ``grad_norm``, and when recorded ``accept_prob``,
        ``step_size`` (NaN where missing) and ``states`` ``(T, k, *shape)``."""
        out: dict[str, np.ndarray] = {"step": np.asarray(self._step, dtype=np.int64)}
        if not self._step:
            out.update(energy=np.zeros(0), grad_norm=np.zeros(0))
            return out
        out["energy"] = self._np(self._energy)
        out["grad_norm"] = self._np(self._grad_norm)
        if any(a is not None for a in self._accept):
            out["accept_prob"] = np.array(
                [np.nan if a is None else float(a) for a in self._accept], dtype=np.float64
            )
        if any(s is not None for s in self._step_size):
            out["step_size"] = np.array(
                [np.nan if s is None else s for s in self._step_size], dtype=np.float64
            )
        if self._states:
            out["states"] = self._np(self._states)
        return out

    def acceptance_rate(self) -> float:
        """Mean of the recorded chain-averaged acceptance probabilities."""
        acc = [a for a in self._accept if a is not None]
        if not acc:
            raise ValueError("no acceptance recorded (an unadjusted sampler?)")
        return float(torch.stack([a.to("cpu", torch.float64) for a in acc]).mean())

    def r_t(self, step_size: float | None = None) -> float:
        """Anatomy's average Langevin gradient magnitude over the recorded steps,
        ``r_t = (ε²/2) · meanₗ meanₘ ‖∇U(Y_m^(ℓ))‖₂``.

        For the step form ``x ← x − s·∇U + …`` we have ``ε²/2 = s``, so
        ``r_t = s · mean grad norm``. ``step_size=None`` uses each step's
        recorded step size, ``meanₗ sₗ·ḡₗ``.
        """
        if not self._step:
            raise ValueError("nothing recorded yet")
        g = self._np(self._grad_norm)
        if step_size is None:
            if any(s is None for s in self._step_size):
                raise ValueError("step_size must be given: the sampler reports no step size")
            return float(np.mean(np.asarray(self._step_size, dtype=np.float64) * g))
        try:
            s = float(step_size)
        except (TypeError, ValueError):
            raise ValueError(f"step_size must be a number > 0, got {step_size!r}") from None
        if not 0 < s < math.inf:
            raise ValueError(f"step_size must be finite and > 0, got {step_size!r}")
        return s * float(g.mean())


__all__ = [
    "TraceRecorder",
    "acceptance_rate",
    "effective_sample_size",
    "ess_bulk",
    "ess_tail",
    "mcse_mean",
    "rank_normalize",
    "rank_normalized_rhat",
    "split_rhat",
    "summarize",
]

"""Gaussian–Bernoulli restricted Boltzmann machine with ``±1`` hidden units.

The model of the SteinCD/SteinGAN paper (Liu & Wang, Sec. 5.1): visible
``x ∈ ℝᵈ``, hidden ``h ∈ {±1}^ℓ``, parameters ``B`` (d×ℓ), ``b`` (d), ``c`` (ℓ).
ebmlab uses the joint

    p(x, h) ∝ exp(xᵀBh + bᵀx + cᵀh − ½‖x‖²),

whose marginal has negative energy

    f(x) = bᵀx − ½‖x‖² + Σⱼ log(e^{yⱼ} + e^{−yⱼ}),   y = Bᵀx + c,

and ``U(x) = −f(x)``. Note on the paper: it prints the joint with ``½ xᵀBh`` but
then gives exactly this ``f(x)``, which only follows from the joint *without*
the ½ (with it, ``y`` would be ``½Bᵀx + c``). ebmlab follows the marginal as
printed; the paper's joint is the same family of models with ``B`` rescaled by 2.

Everything small-ℓ is exact, by enumerating the ``2^ℓ`` hidden states:

* ``p(h) ∝ exp(cᵀh + ½‖b + Bh‖²)`` and ``x | h ~ N(b + Bh, I)``,
* ``Z = (2π)^{d/2} Σ_h exp(cᵀh + ½‖b + Bh‖²)``,
* ``p(hⱼ = +1 | x) = sigmoid(2yⱼ)`` (hidden units independent given ``x``).

``‖b + Bh‖² = ‖b‖² + 2(Bᵀb)ᵀh + hᵀ(BᵀB)h`` is evaluated through the ℓ×ℓ Gram
matrix, so the enumeration costs ``O(2^ℓ ℓ²)`` whatever ``d`` is.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)

#: Largest ``n_hidden`` for which the exact (enumerating) methods run.
MAX_EXACT_HIDDEN = 24
#: Default number of hidden states per chunk in the enumeration.
DEFAULT_CHUNK = 2**14


def _log_2cosh(y: Tensor) -> Tensor:
    """``log(eʸ + e⁻ʸ) = |y| + log1p(e^{−2|y|})``, stable for any ``y``."""
    a = y.abs()
    return a + torch.log1p(torch.exp(-2.0 * a))


def hidden_states(
    n_hidden: int,
    start: int = 0,
    stop: int | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Hidden configurations ``start..stop−1`` of ``{±1}^ℓ`` as rows, shape ``(stop−start, ℓ)``.

    State ``k`` has ``hⱼ = +1`` iff bit ``j`` of ``k`` is set.
    """
    stop = 2**n_hidden if stop is None else stop
    k = torch.arange(start, stop, device=device, dtype=torch.int64)
    bits = (k[:, None] >> torch.arange(n_hidden, device=device, dtype=torch.int64)) & 1
    return (2 * bits - 1).to(dtype)


class GaussianBernoulliRBM(nn.Module):
    """Gaussian–Bernoulli RBM energy ``U(x) = −bᵀx + ½‖x‖² − Σⱼ log 2cosh((Bᵀx + c)ⱼ)``.

    ``forward`` maps ``(N, d)`` or ``(N, *shape)`` with ``prod(shape) = d`` (e.g.
    ``(N, 1, 28, 28)``) to ``(N,)``. The joint is
    ``p(x, h) ∝ exp(xᵀBh + bᵀx + cᵀh − ½‖x‖²)`` — the paper's printed marginal; its
    printed joint has ``½xᵀBh``, i.e. ``B`` scaled by 2 (see the module docstring).

    Exact ``log Z``, ``log p(x)``, hidden marginal and ancestral samples enumerate the
    ``2^ℓ`` hidden states (``n_hidden ≤ 24``); ``gibbs`` works for any size.
    ``B ~ N(0, init_scale²)`` elementwise, ``b = c = 0`` at initialisation.
    """

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        *,
        init_scale: float = 0.01,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("n_visible", n_visible), ("n_hidden", n_hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not init_scale >= 0:
            raise ValueError(f"init_scale must be >= 0, got {init_scale!r}")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        self.n_visible = n_visible
        self.n_hidden = n_hidden
        self.B = nn.Parameter(init_scale * torch.randn(n_visible, n_hidden, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(n_visible, dtype=dtype))
        self.c = nn.Parameter(torch.zeros(n_hidden, dtype=dtype))

    @property
    def dim(self) -> int:
        return self.n_visible

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}"

    # ----------------------------------------------------------------- energies

    def _flatten(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.n_visible:
            raise ValueError(
                f"GaussianBernoulliRBM expects shape (B, {self.n_visible}) or (B, *shape) with "
                f"prod(shape) = {self.n_visible}, got {tuple(x.shape)}"
            )
        return x.reshape(x.shape[0], self.n_visible)

    def _params(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        return self.B.to(dtype), self.b.to(dtype), self.c.to(dtype)

    def _work_dtype(self, x: Tensor) -> torch.dtype:
        return torch.promote_types(x.dtype, self.B.dtype)

    def hidden_preactivation(self, x: Tensor) -> Tensor:
        """``y = Bᵀx + c``, shape ``(N, ℓ)``; ``E[h | x] = tanh(y)``."""
        x = self._flatten(x)
        B, _, c = self._params(self._work_dtype(x))
        return x.to(B.dtype) @ B + c

    def features(self, x: Tensor) -> Tensor:
        """``E[h | x] = tanh(Bᵀx + c)``, ``(N, ℓ)``: features for an SVGD kernel."""
        return torch.tanh(self.hidden_preactivation(x))

    def forward(self, x: Tensor) -> Tensor:
        """``U(x) = −f(x) = −bᵀx + ½‖x‖² − Σⱼ log(e^{yⱼ} + e^{−yⱼ})``, shape ``(N,)``."""
        x = self._flatten(x)
        B, b, c = self._params(self._work_dtype(x))
        x = x.to(B.dtype)
        y = x @ B + c
        return -(x @ b) + 0.5 * x.square().sum(dim=1) - _log_2cosh(y).sum(dim=1)

    def free_energy(self, x: Tensor) -> Tensor:
        """Alias of ``forward``: ``−log Σ_h exp(−joint_energy(x, h))``."""
        return self(x)

    def joint_energy(self, x: Tensor, h: Tensor) -> Tensor:
        """``E(x, h) = −(xᵀBh + bᵀx + cᵀh − ½‖x‖²)`` for ``x (N, d)``, ``h (N, ℓ)``."""
        x = self._flatten(x)
        if h.shape != (x.shape[0], self.n_hidden):
            raise ValueError(
                f"h must have shape ({x.shape[0]}, {self.n_hidden}), got {tuple(h.shape)}"
            )
        B, b, c = self._params(torch.promote_types(self._work_dtype(x), h.dtype))
        x, h = x.to(B.dtype), h.to(B.dtype)
        return -(((x @ B) * h).sum(dim=1) + x @ b + h @ c - 0.5 * x.square().sum(dim=1))

    # ------------------------------------------------------ exact (enumerating)

    def _check_exact(self) -> None:
        if self.n_hidden > MAX_EXACT_HIDDEN:
            raise ValueError(
                f"exact computations enumerate 2^n_hidden hidden states; n_hidden = "
                f"{self.n_hidden} exceeds the limit {MAX_EXACT_HIDDEN}"
            )

    def _hidden_logits_chunks(self, chunk_size: int):
        """Yield ``cᵀh + ½‖b + Bh‖²`` (float64) for consecutive chunks of hidden states."""
        self._check_exact()
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        B, b, c = self._params(torch.float64)
        gram = B.T @ B  # (ℓ, ℓ)
        v = B.T @ b  # (ℓ,)
        bb = b @ b
        n_states = 2**self.n_hidden
        for start in range(0, n_states, chunk_size):
            h = hidden_states(
                self.n_hidden, start, min(start + chunk_size, n_states), device=B.device
            )
            yield h @ c + 0.5 * (bb + 2.0 * (h @ v) + ((h @ gram) * h).sum(dim=1))

    def log_partition(self, chunk_size: int = DEFAULT_CHUNK) -> Tensor:
        """Exact ``log Z = ½d log 2π + log Σ_h exp(cᵀh + ½‖b + Bh‖²)``, a float64 scalar.

        Differentiable in the parameters. Enumerates ``2^ℓ`` states in chunks of
        ``chunk_size``; raises ``ValueError`` if ``n_hidden > 24``.
        """
        parts = [torch.logsumexp(z, dim=0) for z in self._hidden_logits_chunks(chunk_size)]
        return 0.5 * self.n_visible * LOG_2PI + torch.logsumexp(torch.stack(parts), dim=0)

    def hidden_log_marginal(self, chunk_size: int = DEFAULT_CHUNK) -> Tensor:
        """``log p(h)`` for all ``2^ℓ`` states (order of :func:`hidden_states`), float64."""
        logits = torch.cat(list(self._hidden_logits_chunks(chunk_size)))
        return logits - torch.logsumexp(logits, dim=0)

    def log_prob(self, x: Tensor, chunk_size: int = DEFAULT_CHUNK) -> Tensor:
        """Exact ``log p(x) = −U(x) − log Z``, computed and returned in float64, shape ``(N,)``."""
        return -self(self._flatten(x).to(torch.float64)) - self.log_partition(chunk_size)

    @torch.no_grad()
    def mean_log_likelihood(self, x: Tensor, batch_size: int = 4096) -> float:
        """Average exact ``log p(x)`` in nats per example (no gradient)."""
        x = self._flatten(x)
        if x.shape[0] == 0:
            raise ValueError("mean_log_likelihood needs at least one example")
        log_z = self.log_partition()
        total = sum(
            (-self(xb.to(torch.float64))).sum().item() for xb in x.split(batch_size)
        )
        return total / x.shape[0] - log_z.item()

    @torch.no_grad()
    def exact_moments(self) -> dict[str, Tensor]:
        """Exact model expectations (float64): ``E[x] = Σ_h p(h)(b + Bh)``, ``E[h]``,
        ``E[x hᵀ] = Σ_h p(h)(b + Bh)hᵀ`` — the model term of the likelihood gradient
        w.r.t. ``b``, ``c`` and ``B``."""
        B, b, _ = self._params(torch.float64)
        p = self.hidden_log_marginal().exp()
        h = hidden_states(self.n_hidden, device=B.device)
        mean_h = p @ h
        e_hh = (h * p[:, None]).T @ h  # E[h hᵀ]
        return {
            "x": b + B @ mean_h,
            "h": mean_h,
            "xh": b[:, None] * mean_h[None, :] + B @ e_hh,
        }

    def _randn(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=self.B.dtype, device=self.B.device)

    @torch.no_grad()
    def sample_exact(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        return_hidden: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Exact i.i.d. draws ``(n, d)``: ``h ~ p(h) ∝ exp(cᵀh + ½‖b+Bh‖²)``, ``x|h ~ N(b+Bh, I)``.

        ``h`` by inverse CDF over the enumerated states (``n_hidden ≤ 24``).
        """
        self._check_exact()
        cdf = torch.cumsum(self.hidden_log_marginal().exp(), dim=0)
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=cdf.device) * cdf[-1]
        k = torch.searchsorted(cdf, u, right=True).clamp_max(cdf.numel() - 1)
        bits = (k[:, None] >> torch.arange(self.n_hidden, device=k.device)) & 1
        h = (2 * bits - 1).to(self.B.dtype)
        x = self.sample_visible(h, generator)
        return (x, h) if return_hidden else x

    # ------------------------------------------------------------------- Gibbs

    @torch.no_grad()
    def sample_hidden(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``h ~ p(h | x)``: independent, ``P(hⱼ = +1 | x) = sigmoid(2yⱼ)``; shape ``(N, ℓ)``."""
        p = torch.sigmoid(2.0 * self.hidden_preactivation(x))
        u = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)
        return torch.where(u < p, 1.0, -1.0).to(self.B.dtype)

    @torch.no_grad()
    def sample_visible(self, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x ~ p(x | h) = N(b + Bh, I)``; shape ``(N, d)``."""
        if h.dim() != 2 or h.shape[1] != self.n_hidden:
            raise ValueError(f"h must have shape (N, {self.n_hidden}), got {tuple(h.shape)}")
        h = h.to(self.B.dtype)
        return self.b + h @ self.B.T + self._randn((h.shape[0], self.n_visible), generator)

    @torch.no_grad()
    def visible_mean(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``E[x' | h] = b + Bh`` with ``h ~ p(h | x)``: the noise-free mean of a Gibbs
        chain's next visible draw, ``(N, d)``. A draw ``x ~ N(b + Bh, I)`` carries unit
        noise per pixel (in standardised units, as large as the pixels' spread), so
        figures show this mean: what the chains are at, without the noise."""
        h = self.sample_hidden(self._flatten(x).to(self.B.dtype), generator)
        return self.b + h @ self.B.T

    @torch.no_grad()
    def gibbs(
        self,
        x: Tensor,
        n_steps: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``n_steps`` block-Gibbs sweeps ``h ~ p(h|x)``, ``x ~ p(x|h)`` from ``x``; ``(N, d)``."""
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
            raise ValueError(f"n_steps must be an integer >= 0, got {n_steps!r}")
        x = self._flatten(x).to(self.B.dtype)
        for _ in range(n_steps):
            x = self.sample_visible(self.sample_hidden(x, generator), generator)
        return x

    @torch.no_grad()
    def sample(
        self,
        n: int,
        n_steps: int = 1000,
        generator: torch.Generator | None = None,
        x0: Tensor | None = None,
    ) -> Tensor:
        """Approximate draws ``(n, d)`` by block Gibbs; any ``n_hidden``.

        Starts from ``x0`` if given, else from ``x | h`` with ``h`` uniform on ``{±1}^ℓ``,
        and runs ``n_steps`` sweeps. Use :meth:`sample_exact` for exact draws.
        """
        if x0 is None:
            u = torch.rand((n, self.n_hidden), generator=generator, device=self.B.device)
            x0 = self.sample_visible(torch.where(u < 0.5, 1.0, -1.0), generator)
        elif self._flatten(x0).shape[0] != n:
            raise ValueError(f"x0 must hold n = {n} rows, got {x0.shape[0]}")
        return self.gibbs(x0, n_steps, generator)

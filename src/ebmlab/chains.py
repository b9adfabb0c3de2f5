"""Where negative chains start: noise, a persistent replay buffer, data, or a generator.

A :class:`ChainSource` hands out initial states ``x0`` of shape ``(n, *shape)``
and, after sampling, takes the final states back::

    x0 = source.sample(n, generator=g)
    x = sampler.run(energy, x0, n_steps, generator=g)
    source.update(x)  # only the replay buffer keeps them; a no-op elsewhere

``state_dict()`` holds only tensors and plain values (``int``, ``float``,
``bool``, ``str``, lists of ints; nested sources flattened under ``"init."``),
so a checkpoint can be split into safetensors (tensors) and JSON (the rest).
Randomness comes only from the ``generator`` passed to :meth:`ChainSource.sample`
(same seed, same chains); its device must be the device the draws are made on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

StateDict = dict[str, Any]


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return n


def _draw_device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    """Random indices are drawn where the generator lives (else on ``fallback``)."""
    return fallback if generator is None else generator.device


def _shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
        raise ValueError(f"shape must be a positive int or a sequence of them, got {shape!r}")
    return dims


class ChainSource:
    """Interface: ``sample(n, generator=)`` initial states, ``update(x)`` the final ones.

    Stateless sources keep the defaults: ``update`` does nothing and the state
    dict is whatever configuration they want restored (possibly empty).
    """

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` initial chain states, shape ``(n, *shape)``."""
        raise NotImplementedError

    def update(self, x: Tensor) -> None:
        """Write back the chains after sampling (a no-op except for the replay buffer)."""

    def state_dict(self) -> StateDict:
        return {}

    def load_state_dict(self, state: StateDict) -> None:
        if state:
            raise ValueError(
                f"{type(self).__name__} has no state; unexpected keys {sorted(state)}"
            )

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items()
            if not k.startswith("_") and not isinstance(v, Tensor)
        )
        return f"{type(self).__name__}({fields})"


# -- noise ---------------------------------------------------------------------------


class NoiseInit(ChainSource):
    """Fresh noise: ``kind="gaussian"``: ``loc + scale·ξ``, ξ ~ N(0, I), i.e. N(loc, scale²);
    ``kind="uniform"``: U([low, high]^d), i.e. ``low + (high − low)·u``, u ~ U[0, 1).

    ``shape`` is one chain's shape. ``loc``, ``scale``, ``low`` and ``high`` are
    numbers or tensors broadcastable to ``shape`` (data-adapted noise, see
    :meth:`from_data`). Draws have ``dtype`` (default: torch's default dtype)
    and live on ``device`` (default CPU).
    """

    def __init__(
        self,
        shape: int | Sequence[int],
        kind: str = "gaussian",
        scale: float | Tensor = 1.0,
        low: float | Tensor = -1.0,
        high: float | Tensor = 1.0,
        loc: float | Tensor = 0.0,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.dtype = torch.get_default_dtype() if dtype is None else dtype
        if not self.dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        self.device = torch.device("cpu" if device is None else device)
        self._configure(shape=shape, kind=kind, loc=loc, scale=scale, low=low, high=high)

    def _param(self, name: str, value: float | Tensor) -> float | Tensor:
        if isinstance(value, Tensor):
            t = value.detach().to(dtype=self.dtype, device=self.device)
            tail = self.shape[len(self.shape) - t.dim():] if t.dim() else ()
            fits = t.dim() <= len(self.shape) and all(
                a in (1, b) for a, b in zip(t.shape, tail, strict=True)
            )
            if not fits:
                raise ValueError(
                    f"{name} of shape {tuple(t.shape)} does not broadcast to shape {self.shape}"
                )
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} must be finite")
            return t
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number or a tensor, got {value!r}") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return v

    def _configure(
        self,
        *,
        shape: int | Sequence[int],
        kind: str,
        loc: float | Tensor,
        scale: float | Tensor,
        low: float | Tensor,
        high: float | Tensor,
    ) -> None:
        if kind not in ("gaussian", "uniform"):
            raise ValueError(f"kind must be 'gaussian' or 'uniform', got {kind!r}")
        self.shape = _shape(shape)
        self.kind = kind
        self.loc = self._param("loc", loc)
        self.scale = self._param("scale", scale)
        self.low = self._param("low", low)
        self.high = self._param("high", high)
        if not bool(torch.all(torch.as_tensor(self.scale) > 0)):
            raise ValueError("scale must be > 0")
        if not bool(torch.all(torch.as_tensor(self.high) - torch.as_tensor(self.low) > 0)):
            raise ValueError("low must be < high (elementwise)")

    @classmethod
    def from_data(cls, data: Tensor, kind: str = "gaussian", min_scale: float = 1e-3) -> NoiseInit:
        """Noise fitted per coordinate to ``data`` of shape ``(N, *shape)``.

        Gaussian: ``loc = mean``, ``scale = max(sd, min_scale)``; uniform: the
        data's bounding box ``[min, max]`` (widened to ``min_scale`` where flat).
        """
        if not isinstance(data, Tensor) or data.dim() < 2 or data.shape[0] < 2:
            raise ValueError("data must be a tensor of shape (N >= 2, *shape)")
        if not data.is_floating_point():
            raise ValueError(f"data must be a floating tensor, got dtype {data.dtype}")
        kw: dict[str, Any] = {"dtype": data.dtype, "device": data.device}
        if kind == "gaussian":
            kw.update(loc=data.mean(0), scale=data.std(0).clamp_min(min_scale))
        elif kind == "uniform":
            low, high = data.amin(0), data.amax(0)
            kw.update(low=low, high=torch.maximum(high, low + min_scale))
        else:
            raise ValueError(f"kind must be 'gaussian' or 'uniform', got {kind!r}")
        return cls(tuple(data.shape[1:]), kind, **kw)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        size = (_check_n(n), *self.shape)
        if self.kind == "gaussian":
            z = torch.randn(size, generator=generator, dtype=self.dtype, device=self.device)
            return z * self.scale + self.loc
        u = torch.rand(size, generator=generator, dtype=self.dtype, device=self.device)
        return u * (self.high - self.low) + self.low

    def state_dict(self) -> StateDict:
        def val(v: float | Tensor) -> float | Tensor:
            return v.detach().clone() if isinstance(v, Tensor) else v

        return {
            "kind": self.kind,
            "shape": list(self.shape),
            "loc": val(self.loc),
            "scale": val(self.scale),
            "low": val(self.low),
            "high": val(self.high),
        }

    def load_state_dict(self, state: StateDict) -> None:
        keys = {"kind", "shape", "loc", "scale", "low", "high"}
        if set(state) != keys:
            raise ValueError(f"state must have keys {sorted(keys)}, got {sorted(state)}")
        self._configure(**state)


# -- persistent chains -------------------------------------------------------------------


class ReplayBuffer(ChainSource):
    """Persistent chains (PCD / the IGEBM & JEM replay buffer) with random restarts.

    Holds ``capacity`` states, filled from ``init`` on first use (or :meth:`fill`).
    ``sample(n)`` picks ``n`` distinct slots uniformly at random and restarts
    each picked chain from a fresh ``init`` draw with probability
    ``reinit_prob``; ``update(x)`` writes the sampled chains back to those slots.
    The buffer lives on ``device`` (default CPU, to spare accelerator memory;
    ``None``: the chains' device) with the chains' dtype; ``sample`` returns
    tensors on the device and dtype of ``init``'s draws.

    Every call draws ``n`` fresh states from ``init`` (whether or not used), so
    the random stream does not depend on the outcome of the restart coin flips.
    """

    _FILL_CHUNK = 4096

    def __init__(
        self,
        init: ChainSource,
        capacity: int,
        reinit_prob: float = 0.05,
        device: str | torch.device | None = "cpu",
    ) -> None:
        if not isinstance(init, ChainSource):
            raise ValueError(f"init must be a ChainSource, got {type(init).__name__}")
        self.init = init
        self.capacity = self._check_capacity(capacity)
        self.reinit_prob = self._check_prob(reinit_prob)
        self.device = None if device is None else torch.device(device)
        self._buffer: Tensor | None = None
        self._pending: Tensor | None = None
        self.last_indices: Tensor | None = None
        self.last_reinit: Tensor | None = None

    @staticmethod
    def _check_capacity(capacity: int) -> int:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        return capacity

    @staticmethod
    def _check_prob(p: float) -> float:
        try:
            v = float(p)
        except (TypeError, ValueError):
            raise ValueError(f"reinit_prob must be a number in [0, 1], got {p!r}") from None
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"reinit_prob must be in [0, 1], got {p!r}")
        return v

    def __len__(self) -> int:
        return self.capacity

    @property
    def filled(self) -> bool:
        return self._buffer is not None

    @property
    def buffer(self) -> Tensor | None:
        """The stored states ``(capacity, *shape)`` (``None`` before filling)."""
        return self._buffer

    def fill(self, generator: torch.Generator | None = None) -> None:
        """(Re)fill every slot with fresh draws from ``init``."""
        parts: list[Tensor] = []
        left = self.capacity
        while left > 0:
            k = min(left, self._FILL_CHUNK)
            part = self._draw(k, generator)
            parts.append(part.to(self.device) if self.device is not None else part)
            left -= k
        shapes = {p.shape[1:] for p in parts}
        if len(shapes) != 1:
            raise ValueError(f"init returned chains of different shapes: {shapes}")
        self._buffer = torch.cat(parts) if len(parts) > 1 else parts[0]
        self._pending = None

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        x = self.init.sample(n, generator=generator)
        if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] != n:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"init.sample({n}) must return a tensor (n, *shape), got {shape}")
        return x.detach()

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        n = _check_n(n)
        if n > self.capacity:
            raise ValueError(f"n must be <= capacity ({self.capacity}), got {n}")
        if self._buffer is None:
            self.fill(generator)
        assert self._buffer is not None
        where = _draw_device(generator, self._buffer.device)
        idx = torch.randperm(self.capacity, generator=generator, device=where)[:n]
        coins = torch.rand((n,), generator=generator, device=where)
        fresh = self._draw(n, generator)
        if fresh.shape[1:] != self._buffer.shape[1:]:
            raise ValueError(
                f"init draws have shape {tuple(fresh.shape[1:])}, buffer holds "
                f"{tuple(self._buffer.shape[1:])}"
            )
        if self.device is None and self._buffer.device != fresh.device:
            self._buffer = self._buffer.to(fresh.device)  # e.g. after loading a CPU checkpoint
        idx = idx.to(self._buffer.device)
        old = self._buffer[idx].to(device=fresh.device, dtype=fresh.dtype)
        reinit = (coins < self.reinit_prob).to(fresh.device)
        x = torch.where(reinit.view(-1, *([1] * (fresh.dim() - 1))), fresh, old)
        self._pending = idx
        self.last_indices, self.last_reinit = idx, reinit
        return x

    def update(self, x: Tensor) -> None:
        """Store the final states ``x`` (shape of the last sample) in the sampled slots."""
        if self._pending is None or self._buffer is None:
            raise RuntimeError("ReplayBuffer.update called without a prior sample()")
        if not isinstance(x, Tensor):
            raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
        expected = (self._pending.shape[0], *self._buffer.shape[1:])
        if tuple(x.shape) != expected:
            raise ValueError(f"x must have shape {expected} (the last sample), got "
                             f"{tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or infinite values; not stored")
        self._buffer[self._pending] = x.detach().to(self._buffer.device, self._buffer.dtype)
        self._pending = None

    def state_dict(self) -> StateDict:
        buf = self._buffer.clone() if self._buffer is not None else torch.empty(0)
        state: StateDict = {
            "buffer": buf,
            "capacity": self.capacity,
            "reinit_prob": self.reinit_prob,
            "filled": self._buffer is not None,
        }
        state.update({f"init.{k}": v for k, v in self.init.state_dict().items()})
        return state

    def load_state_dict(self, state: StateDict) -> None:
        own = {"buffer", "capacity", "reinit_prob", "filled"}
        missing = own - set(state)
        if missing:
            raise ValueError(f"state is missing keys {sorted(missing)}")
        extra = [k for k in state if k not in own and not k.startswith("init.")]
        if extra:
            raise ValueError(f"state has unexpected keys {sorted(extra)}")
        capacity = self._check_capacity(state["capacity"])
        reinit_prob = self._check_prob(state["reinit_prob"])
        buf = state["buffer"]
        if state["filled"]:
            if not isinstance(buf, Tensor) or buf.dim() < 1 or buf.shape[0] != capacity:
                raise ValueError(f"state['buffer'] must be a tensor with {capacity} rows")
            buf = buf.detach().clone()
            if self.device is not None:
                buf = buf.to(self.device)
        else:
            buf = None
        self.init.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("init.")})
        self.capacity, self.reinit_prob, self._buffer = capacity, reinit_prob, buf
        self._pending = None


# -- data and generator hooks -------------------------------------------------------------


class DataInit(ChainSource):
    """Chains start at data points drawn uniformly with replacement (contrastive divergence),
    plus optional Gaussian jitter: ``x = data[i] + noise_std·ξ``.

    Draws have the device and dtype of ``data``.
    """

    def __init__(self, data: Tensor, noise_std: float = 0.0) -> None:
        if not isinstance(data, Tensor) or data.dim() < 2 or data.shape[0] < 1:
            raise ValueError("data must be a tensor of shape (N >= 1, *shape)")
        if not data.is_floating_point():
            raise ValueError(f"data must be a floating tensor, got dtype {data.dtype}")
        self.data = data.detach()
        self.noise_std = self._check_std(noise_std)

    @staticmethod
    def _check_std(noise_std: float) -> float:
        try:
            v = float(noise_std)
        except (TypeError, ValueError):
            raise ValueError(f"noise_std must be a number >= 0, got {noise_std!r}") from None
        if not 0.0 <= v < float("inf"):
            raise ValueError(f"noise_std must be finite and >= 0, got {noise_std!r}")
        return v

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        where = _draw_device(generator, self.data.device)
        idx = torch.randint(0, self.data.shape[0], (_check_n(n),), generator=generator,
                            device=where)
        x = self.data[idx.to(self.data.device)]
        if self.noise_std > 0:
            x = x + self.noise_std * torch.randn(
                x.shape, generator=generator, dtype=x.dtype, device=x.device
            )
        return x

    def state_dict(self) -> StateDict:
        return {"noise_std": self.noise_std}

    def load_state_dict(self, state: StateDict) -> None:
        if set(state) != {"noise_std"}:
            raise ValueError(f"state must have the key 'noise_std', got {sorted(state)}")
        self.noise_std = self._check_std(state["noise_std"])


class GeneratorInit(ChainSource):
    """Initial states proposed by a hook ``fn(n, generator) -> Tensor (n, *shape)``.

    For CoopNets / VALS / SteinGAN-style training, where a generator network
    proposes the chains. The output is detached unless ``detach=False``. The
    network itself is checkpointed by its owner, so the state dict is empty.
    """

    def __init__(
        self, fn: Callable[[int, torch.Generator | None], Tensor], detach: bool = True
    ) -> None:
        if not callable(fn):
            raise ValueError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.detach = bool(detach)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        n = _check_n(n)
        x = self.fn(n, generator)
        if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] != n:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"fn({n}, generator) must return a tensor (n, *shape), got {shape}")
        return x.detach() if self.detach else x


# -- registry ------------------------------------------------------------------------------


def _build(cls: type, name: str, fixed: dict[str, Any], kw: dict[str, Any]) -> Any:
    params = set(inspect.signature(cls).parameters) - set(fixed)
    unknown = sorted(set(kw) - params)
    if unknown:
        raise ValueError(
            f"chain source {name!r} has no option {unknown[0]!r}; options: {sorted(params)}"
        )
    return cls(**fixed, **kw)


_BUFFER_OPTIONS = ("init", "capacity", "reinit_prob", "buffer_device")

CHAIN_SOURCES = ("noise", "gaussian", "uniform", "buffer", "persistent", "data", "generator")


def make_chain_source(name: str, /, **kw: Any) -> ChainSource:
    """Build a chain source by ``name`` (positional; the options are keywords).

    * ``"noise"`` / ``"gaussian"``: ``NoiseInit(kind="gaussian", **kw)``;
    * ``"uniform"``: ``NoiseInit(kind="uniform", **kw)``;
    * ``"buffer"`` / ``"persistent"``: ``ReplayBuffer`` with options ``capacity``,
      ``reinit_prob``, ``buffer_device`` (the buffer's storage device) and
      ``init``: a :class:`ChainSource`, or the name of one (default ``"uniform"``)
      built from the remaining options, e.g.
      ``make_chain_source("buffer", shape=(2,), capacity=10_000)``;
    * ``"data"``: ``DataInit(data, noise_std)``; ``"generator"``: ``GeneratorInit(fn)``.
    """
    if name in ("noise", "gaussian"):
        return _build(NoiseInit, name, {"kind": "gaussian"}, kw)
    if name == "uniform":
        return _build(NoiseInit, name, {"kind": "uniform"}, kw)
    if name == "data":
        return _build(DataInit, name, {}, kw)
    if name == "generator":
        return _build(GeneratorInit, name, {}, kw)
    if name in ("buffer", "persistent"):
        own = {k: kw.pop(k) for k in _BUFFER_OPTIONS if k in kw}
        if "capacity" not in own:
            raise ValueError(f"chain source {name!r} needs the option 'capacity'")
        init = own.pop("init", "uniform")
        if isinstance(init, str):
            if init in ("buffer", "persistent"):
                raise ValueError(f"init must not be a buffer, got {init!r}")
            init = make_chain_source(init, **kw)
        elif kw:
            raise ValueError(
                f"chain source {name!r} has no option {sorted(kw)[0]!r}; options: "
                f"{list(_BUFFER_OPTIONS)} (plus the init's options when init is a name)"
            )
        device = own.pop("buffer_device", "cpu")
        return ReplayBuffer(init, device=device, **own)
    raise ValueError(f"unknown chain source {name!r}; choose one of {list(CHAIN_SOURCES)}")


__all__ = [
    "CHAIN_SOURCES",
    "ChainSource",
    "DataInit",
    "GeneratorInit",
    "NoiseInit",
    "ReplayBuffer",
    "make_chain_source",
]

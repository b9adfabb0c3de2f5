"""Chain sources: noise, replay buffer, data, generator hook, registry."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ebmlab.chains import (
    ChainSource,
    DataInit,
    GeneratorInit,
    NoiseInit,
    ReplayBuffer,
    make_chain_source,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def split_state(state: dict) -> tuple[dict, str]:
    """What a checkpoint writer would do: tensors apart, the rest as JSON."""
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    plain = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    return tensors, json.dumps(plain)


# -- NoiseInit ---------------------------------------------------------------------------


def test_noise_gaussian_moments_shape_dtype():
    src = NoiseInit((2, 3), loc=1.5, scale=0.5, dtype=torch.float64)
    x = src.sample(20_000, generator=gen())
    assert x.shape == (20_000, 2, 3) and x.dtype == torch.float64
    assert abs(x.mean().item() - 1.5) < 0.01
    assert abs(x.std().item() - 0.5) < 0.01


def test_noise_uniform_in_box_and_tensor_bounds():
    low = torch.tensor([0.0, -3.0])
    high = torch.tensor([1.0, -2.0])
    x = NoiseInit(2, kind="uniform", low=low, high=high).sample(5000, generator=gen())
    assert x.shape == (5000, 2) and x.dtype == torch.get_default_dtype()
    assert (x >= low).all() and (x <= high).all()
    assert torch.allclose(x.mean(0), (low + high) / 2, atol=0.02)
    default = NoiseInit(4, "uniform").sample(1000, generator=gen())
    assert default.min() >= -1 and default.max() <= 1


def test_noise_tensor_loc_scale_and_from_data():
    data = torch.randn(4000, 3, generator=gen(1)) * torch.tensor([1.0, 2.0, 0.1]) + 5.0
    src = NoiseInit.from_data(data)
    x = src.sample(20_000, generator=gen())
    assert torch.allclose(x.mean(0), data.mean(0), atol=0.05)
    assert torch.allclose(x.std(0), data.std(0), rtol=0.03)
    box = NoiseInit.from_data(data, kind="uniform").sample(1000, generator=gen())
    assert (box >= data.amin(0)).all() and (box <= data.amax(0)).all()


def test_noise_same_seed_same_chains():
    src = NoiseInit((3,))
    assert torch.equal(src.sample(7, generator=gen(3)), src.sample(7, generator=gen(3)))
    assert not torch.equal(src.sample(7, generator=gen(3)), src.sample(7, generator=gen(4)))


def test_noise_state_dict_round_trip():
    src = NoiseInit((2,), loc=torch.tensor([1.0, 2.0]), scale=0.3)
    state = src.state_dict()
    split_state(state)  # JSON-able besides the tensors
    other = NoiseInit((2,))
    other.load_state_dict(state)
    assert torch.equal(other.sample(5, generator=gen()), src.sample(5, generator=gen()))
    with pytest.raises(ValueError, match="keys"):
        other.load_state_dict({"kind": "gaussian"})


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"shape": 0}, "shape"),
        ({"shape": (2, -1)}, "shape"),
        ({"shape": 2, "kind": "laplace"}, "kind"),
        ({"shape": 2, "scale": 0.0}, "scale"),
        ({"shape": 2, "scale": torch.tensor([1.0, -1.0])}, "scale"),
        ({"shape": 2, "kind": "uniform", "low": 1.0, "high": 1.0}, "low"),
        ({"shape": 2, "loc": torch.zeros(3)}, "loc"),
        ({"shape": 2, "loc": float("nan")}, "loc"),
        ({"shape": 2, "dtype": torch.int64}, "dtype"),
    ],
)
def test_noise_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        NoiseInit(**kwargs)


@pytest.mark.parametrize("n", [0, -1, 2.0, True])
def test_bad_n(n):
    with pytest.raises(ValueError, match="n must"):
        NoiseInit(2).sample(n)


# -- ReplayBuffer --------------------------------------------------------------------------


def make_buffer(**kw) -> ReplayBuffer:
    kw.setdefault("capacity", 100)
    return ReplayBuffer(NoiseInit((2,), dtype=torch.float64), **kw)


def run_cycle(buf: ReplayBuffer, seed: int, n: int = 10, rounds: int = 5) -> list[torch.Tensor]:
    g, out = gen(seed), []
    for _ in range(rounds):
        x = buf.sample(n, generator=g)
        out.append(x)
        buf.update(x * 0.5 + 1.0)
    return out


def test_buffer_reproducible_with_generator():
    a = run_cycle(make_buffer(), seed=0)
    b = run_cycle(make_buffer(), seed=0)
    c = run_cycle(make_buffer(), seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[-1], c[-1])


def test_buffer_lazy_fill_and_explicit_fill():
    buf = make_buffer(capacity=10_000)  # several fill chunks
    assert not buf.filled and buf.buffer is None and len(buf) == 10_000
    buf.fill(generator=gen(5))
    assert buf.filled and buf.buffer.shape == (10_000, 2)
    assert buf.buffer.dtype == torch.float64 and buf.buffer.device.type == "cpu"
    assert abs(buf.buffer.std().item() - 1.0) < 0.03  # filled from the init (N(0, 1))


def test_buffer_capacity_and_distinct_slots():
    buf = make_buffer(capacity=50)
    x = buf.sample(50, generator=gen())
    assert x.shape == (50, 2)
    assert sorted(buf.last_indices.tolist()) == list(range(50))  # a permutation
    with pytest.raises(ValueError, match="capacity"):
        buf.sample(51)


def test_buffer_update_round_trip():
    buf = make_buffer(capacity=30, reinit_prob=0.0)
    buf.fill(generator=gen())
    before = buf.buffer.clone()
    x = buf.sample(8, generator=gen(1))
    idx = buf.last_indices
    assert torch.equal(x, before[idx])  # no restarts: exactly the stored chains
    buf.update(x + 10.0)
    assert torch.equal(buf.buffer[idx], before[idx] + 10.0)
    rest = torch.ones(30, dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(buf.buffer[rest], before[rest])


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_buffer_reinit_fraction(p):
    n = 4000
    buf = make_buffer(capacity=n, reinit_prob=p)
    buf.sample(n, generator=gen())
    buf.update(torch.full((n, 2), 7.0, dtype=torch.float64))  # every slot holds 7 now
    x = buf.sample(n, generator=gen(1))
    fresh = (x != 7.0).all(dim=1)
    assert torch.equal(fresh, buf.last_reinit)
    se = math.sqrt(p * (1 - p) / n)
    assert abs(fresh.double().mean().item() - p) <= 4 * se + 1e-12


def test_buffer_update_errors():
    buf = make_buffer()
    with pytest.raises(RuntimeError, match="sample"):
        buf.update(torch.zeros(3, 2, dtype=torch.float64))
    x = buf.sample(4, generator=gen())
    with pytest.raises(ValueError, match="shape"):
        buf.update(x[:3])
    with pytest.raises(ValueError, match="shape"):
        buf.update(x.reshape(4, 2, 1))
    with pytest.raises(ValueError, match="NaN"):
        buf.update(torch.full_like(x, float("nan")))
    buf.update(x)
    with pytest.raises(RuntimeError, match="sample"):
        buf.update(x)  # the slots were written back already


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"capacity": 0}, "capacity"), ({"capacity": 2.5}, "capacity"),
     ({"reinit_prob": 1.5}, "reinit_prob"), ({"reinit_prob": "a"}, "reinit_prob")],
)
def test_buffer_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_buffer(**kwargs)


def test_buffer_state_dict_round_trip():
    buf = make_buffer(capacity=40, reinit_prob=0.2)
    run_cycle(buf, seed=0, rounds=3)
    state = buf.state_dict()
    tensors, plain = split_state(state)
    assert set(json.loads(plain)) >= {"capacity", "reinit_prob", "filled"}
    assert tensors["buffer"].shape == (40, 2)
    restored = ReplayBuffer(NoiseInit((2,), dtype=torch.float64), capacity=1, reinit_prob=0.0)
    restored.load_state_dict({**tensors, **json.loads(plain)})
    assert restored.capacity == 40 and restored.reinit_prob == 0.2 and restored.filled
    # Same state + same seed: the same chains from here on.
    assert all(torch.equal(a, b) for a, b in
               zip(run_cycle(buf, seed=9), run_cycle(restored, seed=9), strict=True))
    # The state dict is a copy, not a view of the live buffer.
    assert not torch.equal(state["buffer"], buf.buffer)


def test_buffer_state_dict_unfilled_and_errors():
    buf = make_buffer(capacity=5)
    state = buf.state_dict()
    assert state["filled"] is False
    other = make_buffer(capacity=5)
    other.load_state_dict(state)
    assert not other.filled
    bad = make_buffer(capacity=5)
    bad.fill()
    with pytest.raises(ValueError, match="rows"):
        other.load_state_dict({**bad.state_dict(), "capacity": 6})
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({"capacity": 5})
    with pytest.raises(ValueError, match="unexpected"):
        other.load_state_dict({**state, "foo": 1})


def test_buffer_dtype_and_device_handling():
    # Stored with the chains' dtype; written-back chains of another dtype are cast.
    buf = ReplayBuffer(NoiseInit((3,), dtype=torch.float32), capacity=10)
    x = buf.sample(4, generator=gen())
    assert x.dtype == torch.float32 and buf.buffer.dtype == torch.float32
    buf.update(x.double())
    assert buf.buffer.dtype == torch.float32
    # A float64 checkpoint loaded into a float32 pipeline: chains keep the init's dtype.
    src64 = ReplayBuffer(NoiseInit((3,), dtype=torch.float64), capacity=10)
    src64.fill(generator=gen())
    buf.load_state_dict(src64.state_dict())
    assert buf.sample(4, generator=gen()).dtype == torch.float32
    # device=None: kept on the chains' device (here CPU, the only device in CI).
    local = ReplayBuffer(NoiseInit((3,)), capacity=10, device=None)
    local.sample(2, generator=gen())
    assert local.device is None and local.buffer.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_buffer_cpu_storage_cuda_chains():
    init = NoiseInit((3,), device="cuda")
    buf = ReplayBuffer(init, capacity=64, device="cpu")
    g = torch.Generator(device="cuda").manual_seed(0)
    x = buf.sample(16, generator=g)
    assert x.device.type == "cuda" and buf.buffer.device.type == "cpu"
    buf.update(x + 1)
    assert torch.equal(buf.buffer[buf.last_indices], (x + 1).cpu())
    on_gpu = ReplayBuffer(init, capacity=64, device=None)
    on_gpu.sample(16, generator=g)
    assert on_gpu.buffer.device.type == "cuda"
    on_gpu.load_state_dict(buf.state_dict())  # CPU checkpoint -> moved on next sample
    assert on_gpu.sample(8, generator=g).device.type == "cuda"
    assert on_gpu.buffer.device.type == "cuda"


def test_buffer_with_sampler_loop():
    from ebmlab.energies import Gaussian
    from ebmlab.samplers import Langevin

    # Persistent chains: 2000 slots, half of them run for 5 ULA steps per iteration. Each
    # slot accumulates ~100 steps (relaxation time 1/s = 10), so the buffer holds draws of
    # ULA's stationary law N(μ, I/(1 − s/2)); 5 steps from fresh noise do not get there.
    energy = Gaussian([1.0, -1.0]).double()
    mean = torch.tensor([1.0, -1.0], dtype=torch.float64)
    s = 0.1
    var = 1.0 / (1.0 - s / 2)  # ULA's exact stationary variance on N(μ, I)
    buf = make_chain_source("buffer", shape=(2,), capacity=2000, reinit_prob=0.0,
                            dtype=torch.float64)
    g = gen()
    sampler = Langevin(s)
    for _ in range(40):
        x = sampler.run(energy, buf.sample(1000, generator=g), 5, generator=g)
        buf.update(x)
    chains = buf.buffer
    n = chains.shape[0]
    z = 4.5  # Monte-Carlo standard errors (slots are independent chains)
    se_mean = math.sqrt(var / n)
    assert ((chains.mean(0) - mean).abs() < z * se_mean).all()
    sq = (chains - mean).square()
    se_var = sq.std(0) / math.sqrt(n)
    assert ((sq.mean(0) - var).abs() < z * se_var).all()
    # Without persistence the same budget per call is visibly short of the target.
    fresh = sampler.run(energy, buf.init.sample(n, generator=g), 5, generator=g)
    assert ((fresh.mean(0) - mean).abs() > z * se_mean).all()


# -- DataInit and GeneratorInit ------------------------------------------------------------


def test_data_init_draws_rows_and_jitter():
    data = torch.arange(20.0).reshape(10, 2)
    x = DataInit(data).sample(50, generator=gen())
    assert x.shape == (50, 2)
    assert all(any(torch.equal(r, d) for d in data) for r in x)
    jit = DataInit(data, noise_std=0.1)
    y = jit.sample(2000, generator=gen())
    resid = y - data[(y[:, 0] / 2).round().long().clamp(0, 9)]
    assert abs(resid.std().item() - 0.1) < 0.01
    assert torch.equal(jit.sample(5, generator=gen(2)), jit.sample(5, generator=gen(2)))
    jit.load_state_dict({"noise_std": 0.0})
    assert jit.noise_std == 0.0 and jit.state_dict() == {"noise_std": 0.0}
    x64 = DataInit(data.double()).sample(3)
    assert x64.dtype == torch.float64


@pytest.mark.parametrize(
    ("args", "name"),
    [((torch.zeros(5),), "data"), ((torch.zeros(5, 2, dtype=torch.long),), "data"),
     ((torch.zeros(5, 2), -0.1), "noise_std")],
)
def test_data_init_errors(args, name):
    with pytest.raises(ValueError, match=name):
        DataInit(*args)


def test_generator_init_hook():
    calls = []

    def fn(n, generator):
        calls.append((n, generator))
        return torch.randn(n, 4, generator=generator, requires_grad=True) * 2

    g = gen()
    src = GeneratorInit(fn)
    x = src.sample(6, generator=g)
    assert x.shape == (6, 4) and not x.requires_grad and calls == [(6, g)]
    assert GeneratorInit(fn, detach=False).sample(2).requires_grad
    assert src.state_dict() == {}
    src.update(x)  # no-op
    with pytest.raises(ValueError, match="fn"):
        GeneratorInit(lambda n, g: torch.zeros(n + 1, 4)).sample(3)
    with pytest.raises(ValueError, match="fn"):
        GeneratorInit(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no state"):
        src.load_state_dict({"a": 1})


def test_base_interface():
    assert isinstance(NoiseInit(2), ChainSource)
    with pytest.raises(NotImplementedError):
        ChainSource().sample(1)
    with pytest.raises(ValueError, match="init"):
        ReplayBuffer(lambda n: n, 10)  # type: ignore[arg-type]


# -- registry ----------------------------------------------------------------------------


def test_make_chain_source():
    noise = make_chain_source("noise", shape=(2,), scale=0.5)
    assert isinstance(noise, NoiseInit) and noise.kind == "gaussian" and noise.scale == 0.5
    assert make_chain_source("uniform", shape=3).kind == "uniform"
    data = make_chain_source("data", data=torch.zeros(4, 2), noise_std=0.1)
    assert isinstance(data, DataInit)
    buf = make_chain_source("persistent", shape=(2,), capacity=10, init="noise", loc=1.0)
    assert isinstance(buf, ReplayBuffer) and buf.init.kind == "gaussian"
    assert buf.init.loc == 1.0 and buf.device == torch.device("cpu")
    buf2 = make_chain_source("buffer", init=noise, capacity=10, buffer_device=None)
    assert buf2.init is noise and buf2.device is None and buf2.reinit_prob == 0.05
    assert make_chain_source("buffer", shape=2, capacity=3).init.kind == "uniform"
    assert isinstance(make_chain_source("generator", fn=lambda n, g: torch.zeros(n)),
                      GeneratorInit)


@pytest.mark.parametrize(
    ("kind", "kwargs", "match"),
    [
        ("langevin", {}, "unknown chain source"),
        ("noise", {"shape": 2, "kind": "uniform"}, "kind"),
        ("noise", {"shape": 2, "capacity": 3}, "capacity"),
        ("buffer", {"shape": 2}, "capacity"),
        ("buffer", {"init": NoiseInit(2), "capacity": 3, "shape": 2}, "shape"),
        ("buffer", {"init": "buffer", "capacity": 3}, "init"),
        ("data", {"data": torch.zeros(3, 2), "scale": 1.0}, "scale"),
    ],
)
def test_make_chain_source_errors(kind, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_chain_source(kind, **kwargs)

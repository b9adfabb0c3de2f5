"""The contract every sampler must honour (one parametrised test set)."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.energies import Gaussian, MLPEnergy
from ebmlab.samplers import (
    HMC,
    MALA,
    SAMPLERS,
    SVGD,
    AniLA,
    IndependentMH,
    Langevin,
    NonFiniteError,
    UnderdampedLangevin,
    make_sampler,
)

FACTORIES = {
    "langevin": lambda **kw: Langevin(0.05, **kw),
    "langevin_tempered": lambda **kw: Langevin(0.05, noise_scale=0.01, **kw),
    "anila": lambda **kw: AniLA(0.05, threshold=1.0, **kw),
    "anila_norm": lambda **kw: AniLA(0.05, threshold=1.0, mode="norm", **kw),
    "mala": lambda **kw: MALA(0.1, **kw),
    "mala_adapt": lambda **kw: MALA(0.1, adapt_steps=3, **kw),
    "hmc": lambda **kw: HMC(0.1, n_leapfrog=3, **kw),
    "hmc_mass": lambda **kw: HMC(0.1, n_leapfrog=3, mass=2.0, **kw),
    "underdamped": lambda **kw: UnderdampedLangevin(0.1, friction=1.0, **kw),
    "svgd": lambda **kw: SVGD(0.1, **kw),
    "svgd_normalized": lambda **kw: SVGD(0.1, normalize=True, **kw),
    "imh": lambda **kw: IndependentMH(1.0, **kw),
}
STOCHASTIC = [k for k in FACTORIES if not k.startswith("svgd")]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def quadratic(x: torch.Tensor) -> torch.Tensor:
    """U(x) = ½‖x‖² for any (B, *shape)."""
    return 0.5 * x.reshape(x.shape[0], -1).square().sum(dim=1)


def test_every_registered_sampler_is_covered():
    covered = {FACTORIES[k]().name for k in FACTORIES}
    assert covered == set(SAMPLERS)


@pytest.mark.parametrize("kind", FACTORIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2,), (1, 4, 4)])
def test_shape_dtype_device_follow_x0(kind, dtype, shape):
    x0 = torch.randn(8, *shape, dtype=dtype)
    x = FACTORIES[kind]().run(quadratic, x0, 5, generator=torch.Generator().manual_seed(1))
    assert x.shape == x0.shape and x.dtype == dtype and x.device == x0.device
    assert torch.isfinite(x).all()
    assert not torch.equal(x, x0)


@pytest.mark.parametrize("kind", STOCHASTIC)
def test_reproducible_with_generator(kind):
    x0 = torch.randn(16, 2, dtype=torch.float64)

    def run(seed):
        return FACTORIES[kind]().run(quadratic, x0, 10, generator=gen(seed))

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_svgd_is_deterministic():
    x0 = torch.randn(16, 2, dtype=torch.float64)
    a = SVGD(0.1).run(quadratic, x0, 10)
    assert torch.equal(a, SVGD(0.1).run(quadratic, x0, 10))


@pytest.mark.parametrize("kind", FACTORIES)
def test_no_graph_no_parameter_gradients(kind):
    energy = MLPEnergy(2, width=16, depth=2)
    x0 = torch.randn(8, 2)
    seen = []

    def callback(i, state, info):
        seen.append(state.x.grad_fn is None and not state.x.requires_grad)

    x = FACTORIES[kind]().run(energy, x0, 4, generator=torch.Generator().manual_seed(0),
                              callback=callback)
    assert x.grad_fn is None and not x.requires_grad and all(seen)
    assert all(p.grad is None for p in energy.parameters())
    assert all(p.requires_grad for p in energy.parameters())  # restored after the run
    assert not x0.requires_grad


@pytest.mark.parametrize("kind", FACTORIES)
def test_clamp_keeps_states_in_box(kind):
    x0 = torch.rand(32, 2) * 0.2 - 0.1
    shifted = Gaussian([3.0, 3.0])  # pulls chains out of the box
    x = FACTORIES[kind](clamp=(-0.5, 0.5)).run(
        shifted, x0.double(), 20, generator=torch.Generator().manual_seed(0)
    )
    assert x.min() >= -0.5 and x.max() <= 0.5


@pytest.mark.parametrize("kind", FACTORIES)
def test_grad_clip_accepted_and_runs(kind):
    far = torch.full((4, 2), 50.0, dtype=torch.float64)
    x = FACTORIES[kind](grad_clip=1.0).run(quadratic, far, 3,
                                           generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("kind", FACTORIES)
def test_callback_and_trajectory(kind):
    calls = []
    sampler = FACTORIES[kind]()
    x0 = torch.randn(6, 2, dtype=torch.float64)
    traj = sampler.trajectory(quadratic, x0, 9, thin=3, generator=torch.Generator().manual_seed(0),
                              callback=lambda i, s, info: calls.append((i, info)))
    assert traj.shape == (3, 6, 2)
    assert [i for i, _ in calls] == list(range(9))
    for _, info in calls:
        assert info.energy.shape == (6,) and info.grad_norm.shape == (6,)
        if info.accept_prob is not None:
            assert ((info.accept_prob >= 0) & (info.accept_prob <= 1)).all()
    final = sampler.run(quadratic, x0, 9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(traj[-1], final)


@pytest.mark.parametrize("kind", FACTORIES)
def test_zero_steps_returns_copy_of_x0(kind):
    x0 = torch.randn(4, 2)
    x = FACTORIES[kind]().run(quadratic, x0, 0)
    assert torch.equal(x, x0) and x.data_ptr() != x0.data_ptr()


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, "big"])
def test_bad_step_size_names_the_argument(name, bad):
    extra = {"threshold": 1.0} if name == "anila" else {}
    with pytest.raises(ValueError, match="step_size"):
        make_sampler(name, step_size=bad, **extra)


@pytest.mark.parametrize(
    "build, arg",
    [
        (lambda: AniLA(0.1, threshold=0.0), "threshold"),
        (lambda: AniLA(0.1, threshold=1.0, mode="diag"), "mode"),
        (lambda: Langevin(0.1, noise_scale=-1.0), "noise_scale"),
        (lambda: HMC(0.1, n_leapfrog=0), "n_leapfrog"),
        (lambda: HMC(0.1, mass=-1.0), "mass"),
        (lambda: HMC(0.1, mass=0.0), "mass"),
        (lambda: HMC(0.1, mass=torch.tensor([1.0, math.inf])), "mass"),
        (lambda: MALA(0.1, adapt_steps=10, target_accept=1.5), "target_accept"),
        (lambda: MALA(0.1, adapt_steps=-2), "adapt_steps"),
        (lambda: MALA(0.1, target_accept=1.0), "target_accept"),
        (lambda: HMC(0.1, target_accept=0.0), "target_accept"),
        (lambda: UnderdampedLangevin(0.1, friction=0.0), "friction"),
        (lambda: SVGD(0.1, bandwidth=-2.0), "bandwidth"),
        (lambda: Langevin(0.1, clamp=(1.0, -1.0)), "clamp"),
        (lambda: Langevin(0.1, clamp=(1.0, 1.0)), "clamp"),
        (lambda: Langevin(0.1, clamp=(0.0, 1.0, 2.0)), "clamp"),
        (lambda: Langevin(0.1, grad_clip=0.0), "grad_clip"),
        (lambda: IndependentMH(scale=0.0), "scale"),
        (lambda: IndependentMH(loc=math.nan), "loc"),
        (lambda: make_sampler("gibbs", step_size=0.1), "unknown sampler"),
        (lambda: make_sampler("mala", step=0.1), "no option 'step'"),
    ],
)
def test_bad_hyperparameters(build, arg):
    with pytest.raises(ValueError, match=arg):
        build()


@pytest.mark.parametrize("kind", FACTORIES)
def test_bad_chains_and_steps(kind):
    s = FACTORIES[kind]()
    with pytest.raises(ValueError, match="n_chains"):
        s.run(quadratic, torch.zeros(0, 2), 3)
    with pytest.raises(ValueError, match="n_steps"):
        s.run(quadratic, torch.zeros(3, 2), -1)
    with pytest.raises(ValueError, match="floating"):
        s.run(quadratic, torch.zeros(3, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="NaN"):
        s.run(quadratic, torch.tensor([[0.0, math.nan]]), 3)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        s.run(lambda x: x.sum(dim=1, keepdim=True), torch.zeros(3, 2), 3)
    with pytest.raises(ValueError, match="thin"):
        s.trajectory(quadratic, torch.zeros(3, 2), 3, thin=0)


def blows_up_at(step_of_nan: int):
    calls = {"n": 0}

    def energy(x):
        calls["n"] += 1
        u = quadratic(x)
        return u * math.nan if calls["n"] > step_of_nan else u

    return energy


@pytest.mark.parametrize("kind", FACTORIES)
def test_non_finite_energy_stops_and_names_the_step(kind):
    with pytest.raises(NonFiniteError, match=r"non-finite .* at step \d+"):
        FACTORIES[kind]().run(blows_up_at(3), torch.randn(4, 2), 50,
                              generator=torch.Generator().manual_seed(0))


def test_non_finite_reports_first_bad_step_langevin():
    # ULA evaluates the energy once per step: evaluation 4 is step index 3.
    with pytest.raises(NonFiniteError, match="non-finite energy( and gradient)? at step 3"):
        Langevin(0.1).run(blows_up_at(3), torch.randn(4, 2), 10)


def test_langevin_temperature_mapping():
    assert Langevin(0.5).temperature == pytest.approx(1.0)
    assert Langevin(1.0, noise_scale=0.01).temperature == pytest.approx(5e-5)
    d = Langevin.from_delta(0.2)
    assert d.step_size == pytest.approx(0.02) and d.noise_scale == pytest.approx(0.2)
    assert d.temperature == pytest.approx(1.0)


def test_langevin_one_step_formula():
    s, sigma = 0.3, 0.7
    x0 = torch.randn(5, 3, dtype=torch.float64)
    gen = torch.Generator().manual_seed(11)
    x1 = Langevin(s, noise_scale=sigma).run(quadratic, x0, 1, generator=gen)
    xi = torch.randn(x0.shape, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    torch.testing.assert_close(x1, x0 - s * x0 + sigma * xi)


def test_anila_step_scaling_formula():
    s, b = 0.1, 0.5
    x0 = torch.tensor([[0.2, 3.0]], dtype=torch.float64)  # ∇U = x: one entry below b, one above
    x1 = AniLA(s, threshold=b).run(quadratic, x0, 1, generator=torch.Generator().manual_seed(2))
    xi = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    gamma = b / x0.abs().clamp_min(b)
    torch.testing.assert_close(x1, x0 - s * gamma * x0 + math.sqrt(2 * s) * gamma.sqrt() * xi)


def reference_chain(energy, x0, n_steps, s, b, seed):
    """ULA / AniLA written out independently of the samplers: autograd gradient, noise
    drawn step by step from one generator, ``x ← x − s·γ·∇U + √(2s)·√γ·ξ`` with
    ``γ = b / max(b, |∂ⱼU|)`` (γ = 1 when ``b`` is None)."""
    g = gen(seed)
    x = x0.clone()
    for _ in range(n_steps):
        xg = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(xg).sum(), xg)
        noise = torch.randn(x.shape, generator=g, dtype=x.dtype)
        gamma = torch.ones_like(grad) if b is None else b / torch.maximum(
            torch.full_like(grad, b), grad.abs())
        x = (x - s * gamma * grad + math.sqrt(2 * s) * gamma.sqrt() * noise).detach()
    return x


@pytest.mark.parametrize("kind", ["langevin", "anila"])
def test_compiled_chunks_match_eager_steps(kind):
    energy = MLPEnergy(2, width=16, depth=2)
    x0 = torch.randn(32, 2)
    b = {"langevin": None, "anila": 0.03}[kind]  # MLP gradients here are ~0.05
    build = {"langevin": lambda **kw: Langevin(0.05, **kw),
             "anila": lambda **kw: AniLA(0.05, threshold=0.03, **kw)}[kind]
    reference = reference_chain(energy, x0, 21, 0.05, b, seed=5)
    eager = build().run(energy, x0, 21, generator=gen(5))
    torch.testing.assert_close(eager, reference, rtol=1e-5, atol=1e-6)
    compiled = build(compile=True, chunk=4).run(energy, x0, 21, generator=gen(5))
    torch.testing.assert_close(compiled, reference, rtol=1e-4, atol=1e-5)
    assert all(p.requires_grad and p.grad is None for p in energy.parameters())
    if b is not None:  # the threshold is active on some coordinates: γ matters
        (grad,) = torch.autograd.grad(energy(x0.requires_grad_(True)).sum(), x0)
        assert (grad.abs() > b).any() and (grad.abs() < b).any()


def test_compiled_chunks_report_the_first_non_finite_step():
    calls = {"n": 0}

    def energy(x):
        calls["n"] += 1
        return quadratic(x) * torch.where(x[:, :1].abs().sum() > 1e30, math.nan, 1.0)

    x0 = torch.ones(4, 2)
    with pytest.raises(NonFiniteError, match="at step"):
        Langevin(5.0, compile=True, chunk=4).run(energy, x0, 60, generator=gen(0))


# -- the final state is checked too ------------------------------------------------------
EXPLODERS = {  # one step from x0 = ones sends the state to ±inf in float32
    "langevin": lambda: Langevin(1e21),
    "anila": lambda: AniLA(1e39, threshold=1.0),
    "underdamped": lambda: UnderdampedLangevin(1e39),
    "svgd": lambda: SVGD(1e39),
}


def steep(x: torch.Tensor) -> torch.Tensor:
    return 1e18 * x.square().sum(1)


@pytest.mark.parametrize("kind", EXPLODERS)
def test_non_finite_final_state_raises(kind):
    with pytest.raises(NonFiniteError, match="non-finite state at step 0"):
        EXPLODERS[kind]().run(steep, torch.ones(4, 2), 1, generator=gen(0))
    seen = []
    with pytest.raises(NonFiniteError, match="non-finite state at step 0"):
        EXPLODERS[kind]().run(steep, torch.ones(4, 2), 1, generator=gen(0),
                              callback=lambda i, s, info: seen.append(i))
    assert seen == []  # the callback never saw the bad state
    with pytest.raises(NonFiniteError, match="non-finite"):
        EXPLODERS[kind]().trajectory(steep, torch.ones(4, 2), 3, generator=gen(0))


def test_issue_example_langevin_huge_step():
    with pytest.raises(NonFiniteError, match="Langevin: non-finite state at step 0"):
        Langevin(1e21).run(lambda x: 1e18 * x.square().sum(1), torch.ones(4, 2), 1)


def kicked_at(call: int):
    """A flat energy (U = 0, ∇U = 0) until evaluation ``call``, from which on ∇U = 1e10
    per entry: finite energy and gradient, but a gradient step of 1e30 sends the state
    to -inf in float32."""
    calls = {"n": 0}

    def energy(x):
        calls["n"] += 1
        kick = 1e10 if calls["n"] >= call else 0.0
        return kick * (x - x.detach()).sum(dim=1)

    return energy


def test_callback_never_sees_a_non_finite_state():
    states = []
    with pytest.raises(NonFiniteError, match="non-finite state at step 3"):
        Langevin(1e30, noise_scale=0.0).run(
            kicked_at(4), torch.ones(4, 2), 10,
            callback=lambda i, s, info: states.append((i, s.x.clone())))
    assert [i for i, _ in states] == [0, 1, 2]
    assert all(torch.isfinite(x).all() for _, x in states)
    # Without a callback the checks are batched: the bad state shows as the next
    # step's non-finite energy, still before the run returns.
    with pytest.raises(NonFiniteError, match="at step 4"):
        Langevin(1e30, noise_scale=0.0).run(kicked_at(4), torch.ones(4, 2), 10)


def test_valid_target_accept_is_used():
    assert MALA(0.1, adapt_steps=3, target_accept=0.99).adaptation.target_accept == 0.99
    assert HMC(0.1, adapt_steps=3, target_accept=0.01).adaptation.target_accept == 0.01
    assert MALA(0.1, adapt_steps=3).adaptation.target_accept == 0.574
    assert HMC(0.1, adapt_steps=3).adaptation.target_accept == 0.65
    assert MALA(0.1, target_accept=0.9).adaptation is None  # no adaptation asked for


@pytest.mark.parametrize("kind", FACTORIES)
def test_state_counts_its_steps(kind):
    from ebmlab.samplers import drive

    state, info = drive(FACTORIES[kind](), quadratic, torch.randn(4, 2), 7,
                        generator=gen(0))
    assert state.n_steps == 7 and info is not None
    state, _ = drive(FACTORIES[kind](), quadratic, state.x, 3, generator=gen(1), state=state)
    assert state.n_steps == 10


@pytest.mark.parametrize("kind", FACTORIES)
def test_trajectory_shorter_than_thin_is_empty(kind):
    x0 = torch.randn(3, 2)
    traj = FACTORIES[kind]().trajectory(quadratic, x0, 2, thin=5, generator=gen(0))
    assert traj.shape == (0, 3, 2) and traj.dtype == x0.dtype


def test_underdamped_one_step_formula():
    """BAOAB written out: v₀ ~ N(0, 1/m), B, A, O, A, B, with the run's noise stream."""
    h, gamma, m = 0.3, 1.5, 2.0
    x0 = torch.randn(5, 3, dtype=torch.float64)
    x1 = UnderdampedLangevin(h, friction=gamma, mass=m).run(quadratic, x0, 1, generator=gen(3))
    g = gen(3)
    v = torch.randn(x0.shape, generator=g, dtype=torch.float64) / math.sqrt(m)
    c = math.exp(-gamma * h)
    v = v - 0.5 * h * x0 / m  # ∇U = x
    x = x0 + 0.5 * h * v
    v = c * v + math.sqrt((1 - c**2) / m) * torch.randn(x0.shape, generator=g,
                                                         dtype=torch.float64)
    torch.testing.assert_close(x1, x + 0.5 * h * v)

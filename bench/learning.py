"""Learning benchmark: MCMC maximum-likelihood methods on 2-D toys at a fixed wall-clock budget.

For every data set (8gaussians, 25gaussians, rings, checkerboard, moons) and every
contender (non-persistent short-run learning from noise, persistent chains with
Langevin and with AniLA, contrastive divergence CD-K), a fresh ``Trainer`` runs
``train_step()`` until ``--budget`` seconds of wall time are spent (the learning
rate follows a cosine over that *time*), then is evaluated:

* ``KL``: the exact ``KL(p_data ‖ p_θ)`` by quadrature, where the data density
  is known; for moons (no closed-form density) the test NLL in nats instead;
* short-run samples: the method's own negatives (K sampler steps from its own
  chain start: noise, the replay buffer, or data), 1000 of them against the
  test set: MMD² (RBF, median bandwidth) and ``KDE-KL = KL(p_data ‖ KDE)``;
* long-run samples: ``Trainer.long_run_check()``, chains ``longrun_factor × K``
  steps (about 2000) from test data and from noise, same two numbers;
* ``d_st = mean U(data) − mean U(negatives)`` over the second half of
  training: mean ± sd. A mean near 0 with sd ≫ |mean| is the Anatomy
  paper's "d_st oscillates around 0".

Then TorchEBM 0.8.9's persistent contrastive divergence
(``torchebm.losses.ContrastiveDivergence(persistent=True)``) against ebmlab's
persistent learning and CD on 8gaussians: the same ``MLPEnergy`` (same initial
weights), the same standardised data, batch, Adam settings, learning-rate
schedule, Langevin step and K. For each budget in ``--peer-budgets`` the
trainings start afresh, run interleaved in short time slices in one process (so
load on a shared machine hits them alike), and are scored by ebmlab's exact
quadrature KL at the end of their budget.

Besides the maximum-likelihood methods, ``--methods steincd,steingan`` runs the
Stein methods on the same toys.

    python bench/learning.py --quick          # smoke test, ~4 minutes
    python bench/learning.py                  # full table (~35 min at 1 thread)
    python bench/learning.py --budget 30 --datasets 8gaussians,rings

Results: a Markdown report on stdout and in ``bench/out/learning.md`` (``--out``).
Runs use one thread unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import math
import os
import platform
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab.config import load_config
from ebmlab.data.toy2d import make_toy
from ebmlab.evaluate import mmd2
from ebmlab.evaluate.exact2d import evaluate_2d, make_grid
from ebmlab.evaluate.sample_quality import kde_kl, kde_log_density
from ebmlab.experiment import Data, DataSpaceEnergy, RunConfig, load_data
from ebmlab.samplers import NonFiniteError
from ebmlab.train import Trainer, TrainingError

HERE = Path(__file__).resolve().parent
DATASETS = ("8gaussians", "25gaussians", "rings", "checkerboard", "moons")

# -- settings -------------------------------------------------------------------------------
# The network and optimiser shared by every run (the library defaults, spelled out so the
# table does not change meaning when a default moves).
COMMON = [
    "model.width=64", "model.depth=3", "model.activation=leaky_relu", "model.reference_sd=none",
    "train.batch_size=200", "train.optimizer=adam", "train.lr=1e-3", "train.beta1=0.5",
    "train.beta2=0.999", "train.lr_schedule=cosine",
]

# Temperature-1 Langevin step s per data set, in standardised units. ULA's step must be
# small against the data's local variance v (mode / ring / moon width after standardising)
# or the learned density comes out too sharp; too small and chains barely move.
STEP = {
    "8gaussians": 0.005,    # component sd 0.174 → v = 0.030
    "25gaussians": 0.002,   # component sd 0.094 → v = 0.0088
    "rings": 0.002,         # radial sd 0.077 → v = 0.0060
    "checkerboard": 0.005,  # squares of side 0.87, no curvature scale: as 8gaussians
    "moons": 0.003,         # noise sd 0.11-0.2 → v ≈ 0.02
}
# Bandwidth (data units) of the sharp KDE-KL, about half the data's local sd: Scott's rule
# (``kde_kl``) smooths multimodal toys so much that exact samples score 0.6-1.2 nats.
SHARP_H = {"8gaussians": 0.2, "25gaussians": 0.12, "rings": 0.1, "checkerboard": 0.2,
           "moons": 0.1}


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    overrides: tuple[str, ...]
    step: float | None = None  # fixed sampler step; None: STEP[data] (temperature 1)


CONTENDERS = (
    # Non-convergent short-run learning (Anatomy / Nijkamp et al. 2019): fresh noise every
    # iteration, K tempered steps (T = σ²/2s = 0.0025); the energy learns to be a generator.
    Contender("short_run", "short-run from noise (σ = 0.01)",
              ("method.name=short_run", "method.n_steps=20", "method.init=gaussian",
               "method.init_scale=1.0", "sampler.name=langevin", "sampler.noise_scale=0.01"),
              step=0.02),
    Contender("persistent", "persistent, Langevin",
              ("method.name=persistent", "method.n_steps=20", "method.buffer_size=500",
               "method.reinit_prob=0.05", "sampler.name=langevin")),
    Contender("persistent_anila", "persistent, AniLA (b = 10)",
              ("method.name=persistent", "method.n_steps=20", "method.buffer_size=500",
               "method.reinit_prob=0.05", "sampler.name=anila", "sampler.threshold=10.0")),
    Contender("cd", "CD-5 (from data)",
              ("method.name=cd", "method.n_steps=5", "sampler.name=langevin")),
    # Stein methods (SteinCD-SteinGAN paper): one SVGD step (ε = 0.1) from the data, and an
    # MLP generator following the SVGD direction. SteinGAN's MLP energy needs the energy
    # penalty (α = 0.1): without it the energy runs off (KL > 30 in a probe).
    Contender("steincd", "SteinCD (ε = 0.1)",
              ("method.name=steincd", "sampler.name=svgd"), step=0.1),
    Contender("steingan", "SteinGAN (MLP generator, α_E = 0.1)",
              ("method.name=steingan", "sampler.name=svgd", "method.energy_penalty=0.1",
               "optim.generator.lr=3e-3"), step=0.1),
)
DEFAULT_METHODS = ("short_run", "persistent", "persistent_anila", "cd")


def make_config(data: str, c: Contender, seed: int, longrun_steps: int) -> RunConfig:
    step = STEP[data] if c.step is None else c.step
    ov = [f"data.name={data}", *COMMON, *c.overrides, f"sampler.step_size={step!r}",
          f"train.seed={seed}", "train.progress=false", "train.plot_every=0",
          "train.ckpt_every=1000000000", "train.log_every=1000000000", "train.threads=0"]
    cfg = load_config(RunConfig, overrides=ov)
    cfg.train.longrun_factor = max(1, round(longrun_steps / target_steps(cfg)))
    return cfg


def target_steps(cfg: RunConfig) -> int:
    """Sampler steps of one model sample (the method's K; SteinCD's SVGD steps from noise;
    at least 1), so that a long run is ``longrun_factor`` times that many steps."""
    m = cfg.method
    return max(1, int(getattr(m, "n_steps", None) or getattr(m, "sample_steps", None) or 1))


# -- training at a fixed wall-clock budget -------------------------------------------------
def time_cosine(trainer: Trainer, clock: Callable[[], float], budget: float) -> None:
    """Make the trainer's cosine schedule run over wall time instead of iterations."""
    cosine = trainer.cfg.train.lr_schedule == "cosine"

    def learning_rate(iteration: int, group: str = "energy") -> float:
        lr = trainer.cfg.optim_for(group).lr * trainer.method.lr_scale(group) * trainer.lr_factor
        if cosine:
            lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, clock() / budget)))
        return lr

    trainer.learning_rate = learning_rate  # type: ignore[method-assign]


@dataclass
class Clock:
    """Seconds spent inside ``running()`` blocks (evaluation pauses it), by wall clock
    (``kind="wall"``) or by this process's CPU time (``kind="cpu"``: on a loaded machine,
    the time a one-thread run actually got)."""

    kind: str = "wall"
    spent: float = 0.0
    _since: float | None = None

    def timer(self) -> float:
        return time.perf_counter() if self.kind == "wall" else time.process_time()

    def __call__(self) -> float:
        extra = 0.0 if self._since is None else self.timer() - self._since
        return self.spent + extra

    @contextlib.contextmanager
    def running(self):  # noqa: ANN201 - a context manager
        self._since = self.timer()
        try:
            yield
        finally:
            self.spent += self.timer() - self._since
            self._since = None


def torchebm_model(net: nn.Module) -> Any:
    """``net`` as a TorchEBM ``BaseModel`` (float32, CPU): the same energy for its samplers."""
    from torchebm.core import BaseModel

    class Wrapped(BaseModel):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__(dtype=torch.float32, device=torch.device("cpu"))
            self.inner = inner

        def forward(self, x: Tensor) -> Tensor:
            return self.inner(x)

    return Wrapped(net)


@dataclass
class Result:
    data: str
    contender: Contender
    step: float
    iterations: int = 0
    seconds: float = 0.0
    error: str | None = None
    kl: float | None = None
    nll: float | None = None
    mass_outside: float | None = None  # the model's mass outside the evaluation box
    short: dict[str, float] = field(default_factory=dict)
    long_data: dict[str, float] = field(default_factory=dict)
    long_noise: dict[str, float] = field(default_factory=dict)
    d_st: tuple[float, float] | None = None
    longrun_steps: int = 0


def sharp_kde_kl(log_p: Callable[[Tensor], Tensor], samples: Tensor, bounds: Any, h: float,
                 n_grid: int = 150) -> float:
    """``KL(p_data ‖ KDE)`` with a fixed bandwidth ``h`` (data units) on both axes."""
    grid = make_grid(bounds, n_grid)
    pts = grid.points()
    log_p_grid = log_p(pts).double()
    log_q = kde_log_density(samples.detach().cpu(), pts,
                            bandwidth=torch.tensor([h, h], dtype=torch.float64))
    p = log_p_grid.exp() * grid.cell_area
    keep = p > 0
    return float((p[keep] * (log_p_grid[keep] - log_q[keep])).sum() / p.sum())


def sample_quality(data: Data, x: Tensor, n: int) -> dict[str, float]:
    """MMD² and KDE-KLs of standardised samples ``x`` against ``n`` test points."""
    xd = data.to_data_space(x)
    test = data.to_data_space(data.test[:n])
    out = {"mmd2": mmd2(xd, test)}
    if data.log_density is not None and data.bounds is not None:
        out["kde_kl"] = kde_kl(data.log_density, xd.cpu(), data.bounds)
        out["sharp"] = sharp_kde_kl(data.log_density, xd, data.bounds, SHARP_H[data.name])
    return out


def short_run_samples(trainer: Trainer, n: int) -> Tensor:
    """The method's own negatives: K steps from where it starts its chains (noise, the
    replay buffer, or test data), drawn in pieces no larger than the buffer; SteinCD's
    one SVGD step from test data; SteinGAN's generator samples."""
    method: Any = trainer.method
    gen = trainer.side_rng(3)
    if method.name == "steincd":  # one SVGD step from test data
        x = trainer.data.test[:n]
        return x + method.sampler.step_size * method.sampler.direction(trainer.energy, x)[0]
    if not hasattr(method, "initial_chains"):  # a generator
        return method.sample(n, rng=gen)
    piece = getattr(method.chains, "capacity", n) if method.name == "persistent" else n
    parts = []
    for i in range(0, n, piece):
        x0 = method.initial_chains(trainer.data.test[i:i + min(piece, n - i)], gen)
        parts.append(method.sampler.run(trainer.energy, x0, trainer.cfg.method.n_steps,
                                        generator=gen))
    return torch.cat(parts)


def long_run_samples(trainer: Trainer, n: int) -> dict[str, Tensor]:
    """The chains of ``Trainer.long_run_check()`` (same generator, starts and length:
    ``longrun_factor × K`` steps from test data and from noise), without its plots."""
    target = trainer.method.target()
    steps = max(target.n_steps, 1) * trainer.cfg.train.longrun_factor
    gen = trainer.side_rng(1)
    starts = {"data": trainer.data.test[:n], "noise": None}
    return {origin: trainer.model_samples(n, gen, n_steps=steps, x0=x0)[0]
            for origin, x0 in starts.items()}


def exact_metrics(trainer: Trainer, n_grid: int
                  ) -> tuple[float | None, float | None, float | None]:
    data = trainer.data
    if data.bounds is None:
        return None, None, None
    result = evaluate_2d(trainer.data_space_energy(), data.log_density,
                         data.to_data_space(data.test), bounds=data.bounds, n_grid=n_grid)
    return result.get("kl"), result["nll"], result["model_mass_outside"]


def reference(data_name: str, n: int) -> dict[str, float]:
    """The scores of ``n`` exact held-out samples: the floor of every sample column."""
    data = load_data(load_config(RunConfig, overrides=[f"data.name={data_name}"]).data)
    fresh = (make_toy(data.name, n, seed=12345) - data.shift) / data.scale
    return sample_quality(data, fresh, n)


def run_one(data: str, c: Contender, args: argparse.Namespace) -> Result:
    cfg = make_config(data, c, args.seed, args.longrun_steps)
    res = Result(data, c, cfg.samplers["negatives"]["step_size"],
                 longrun_steps=cfg.train.longrun_factor * target_steps(cfg))
    out = Path(tempfile.mkdtemp(prefix=f"learning-{data}-{c.key}-"))
    try:
        trainer = Trainer(cfg, out, log=lambda s: None)
        clock = Clock()
        time_cosine(trainer, clock, args.budget)
        d_st: list[float] = []
        try:
            with clock.running():
                while clock() < args.budget:
                    d_st.append(trainer.train_step()["d_st"])
        except TrainingError as e:
            res.error = str(e)
        res.iterations, res.seconds = trainer.iteration, clock()
        half = d_st[len(d_st) // 2:]
        if half:
            res.d_st = (statistics.fmean(half), statistics.pstdev(half))
        if res.error is not None:
            return res
        res.kl, res.nll, res.mass_outside = exact_metrics(trainer, args.n_grid)
        n = min(1000, trainer.data.test.shape[0])
        try:
            res.short = sample_quality(trainer.data, short_run_samples(trainer, n), n)
        except NonFiniteError as e:
            res.short = {"error": str(e)}
        try:
            long = long_run_samples(trainer, n)
            res.long_data = sample_quality(trainer.data, long["data"], n)
            if "noise" in long:  # SteinCD has no noise source
                res.long_noise = sample_quality(trainer.data, long["noise"], n)
        except NonFiniteError as e:
            res.long_data = res.long_noise = {"error": str(e)}
        return res
    finally:
        shutil.rmtree(out, ignore_errors=True)


# -- the TorchEBM comparison -----------------------------------------------------------------
@dataclass
class Side:
    """One of the two trainings of the peer comparison."""

    name: str
    step: Callable[[], None]
    energy_x: Callable[[], nn.Module]
    clock: Clock = field(default_factory=Clock)
    iterations: int = 0
    curve: list[tuple[float, int, float]] = field(default_factory=list)  # (s, iters, KL)
    error: str | None = None
    mass_outside: float = 0.0  # the model's mass outside the evaluation box, at the end


def torchebm_side(trainer: Trainer, budget: float, seed: int, persistent: bool) -> Side:
    """TorchEBM 0.8.9's (P)CD on a copy of the trainer's network, data, batch, optimiser,
    schedule, Langevin step and K."""
    from torchebm.losses import ContrastiveDivergence
    from torchebm.samplers import LangevinDynamics

    cfg = trainer.cfg
    net = type(trainer.energy)(trainer.data.dim, width=cfg.model.width, depth=cfg.model.depth,
                               activation=cfg.model.activation)
    net.load_state_dict(trainer.energy.state_dict())  # the same initial weights

    model = torchebm_model(net)
    # TorchEBM's step is x ← x − h∇U + ν√(2h)ξ: h = s and ν = 1 is temperature 1, as ebmlab's.
    sampler = LangevinDynamics(model, step_size=cfg.samplers["negatives"]["step_size"],
                               noise_scale=1.0)
    options: dict[str, Any] = {"buffer_size": cfg.method.buffer_size} if persistent else {}
    loss_fn = ContrastiveDivergence(
        model=model, sampler=sampler, k_steps=cfg.method.n_steps, persistent=persistent,
        energy_reg_weight=cfg.method.energy_penalty, **options,
    )  # its own defaults otherwise: init_steps=100, new_sample_ratio=0.05, FIFO buffer
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr,
                           betas=(cfg.train.beta1, cfg.train.beta2))
    gen = torch.Generator().manual_seed(seed + 1)
    train = trainer.data.train
    name = ("TorchEBM ContrastiveDivergence(persistent=True)" if persistent
            else f"TorchEBM ContrastiveDivergence (CD-{cfg.method.n_steps})")
    side = Side(name, lambda: None,
                lambda: DataSpaceEnergy(net, trainer.data.shift, trainer.data.scale))

    def step() -> None:
        lr = cfg.train.lr
        if cfg.train.lr_schedule == "cosine":
            lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, side.clock() / budget)))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, train.shape[0], (cfg.train.batch_size,), generator=gen)
        loss, _ = loss_fn(train[idx], generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    side.step = step
    return side


def ebmlab_side(name: str, trainer: Trainer, budget: float) -> Side:
    side = Side(name, lambda: None, trainer.data_space_energy)
    time_cosine(trainer, side.clock, budget)

    def step() -> None:
        trainer.train_step()

    side.step = step
    return side


def peer_round(args: argparse.Namespace, budget: float, seed: int) -> list[Side]:
    """Four fresh trainings (ebmlab persistent and CD-5, TorchEBM PCD and CD-5) of
    ``budget`` seconds each, cosine over that budget, interleaved in short slices."""
    contenders = {c.key: c for c in CONTENDERS}
    folders = []
    try:
        trainers = {}
        for key in ("persistent", "cd"):
            cfg = make_config("8gaussians", contenders[key], seed, args.longrun_steps)
            folders.append(Path(tempfile.mkdtemp(prefix="learning-peer-")))
            trainers[key] = Trainer(cfg, folders[-1], log=lambda s: None)
        sides = [
            ebmlab_side("ebmlab persistent (Langevin, K = 20)", trainers["persistent"], budget),
            ebmlab_side("ebmlab CD-5", trainers["cd"], budget),
            torchebm_side(trainers["persistent"], budget, seed, persistent=True),
            torchebm_side(trainers["cd"], budget, seed, persistent=False),
        ]
        rng = random.Random(seed)
        while any(s.error is None and s.clock() < budget for s in sides):
            order = sides[:]
            rng.shuffle(order)
            for s in order:  # one slice each, in a shuffled order
                if s.error is not None or s.clock() >= budget:
                    continue
                target = min(budget, s.clock() + args.slice)
                try:
                    with s.clock.running():
                        while s.clock() < target:
                            s.step()
                            s.iterations += 1
                except (TrainingError, RuntimeError, ValueError) as e:
                    s.error = str(e)
        data = trainers["persistent"].data
        for s in sides:
            if s.error is None:
                r = evaluate_2d(s.energy_x(), data.log_density, bounds=data.bounds,
                                n_grid=args.n_grid)
                s.curve.append((s.clock(), s.iterations, r["kl"]))
                s.mass_outside = r["model_mass_outside"]
        return sides
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


PAIRS = (("PCD vs PCD", "ebmlab persistent", "TorchEBM ContrastiveDivergence(persistent"),
         ("CD-5 vs CD-5", "ebmlab CD-5", "TorchEBM ContrastiveDivergence (CD"))


def peer_comparison(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """ebmlab's persistent learning and CD-5 against TorchEBM's PCD and CD-5 on 8gaussians,
    at every budget of ``--peer-budgets`` and every seed of ``--peer-seeds``: the final
    exact KL of a training given that much wall time (so each run's learning-rate schedule
    completes, as a user's would). Compared like for like: PCD with PCD, CD with CD, and
    each library's best method with the other's."""
    try:
        import torchebm  # noqa: F401
    except ImportError as e:
        return [f"TorchEBM not available ({e}); `pip install --no-deps torchebm==0.8.9`."], {}
    finals: dict[str, dict[float, list[float]]] = {}
    outside = 0.0
    iters: dict[str, dict[float, list[int]]] = {}
    errors: dict[str, str] = {}
    for budget in args.peer_budgets:
        for seed in args.peer_seeds:
            for s in peer_round(args, budget, seed):
                if s.curve:
                    outside = max(outside, s.mass_outside)
                    finals.setdefault(s.name, {}).setdefault(budget, []).append(s.curve[-1][2])
                    iters.setdefault(s.name, {}).setdefault(budget, []).append(s.iterations)
                else:
                    finals.setdefault(s.name, {})
                    errors[s.name] = str(s.error)
            print(f"  peer budget {budget:g} s, seed {seed}: " + ", ".join(
                f"{n.split(' (')[0]} {fmt(v[budget][-1]) if budget in v else 'failed'}"
                for n, v in finals.items()), file=sys.stderr, flush=True)
    names = list(finals)
    lines = [
        "| budget (s) | " + " | ".join(f"{n}: final KL, mean ± sd (iterations)" for n in names)
        + " |",
        "|---:|" + "---:|" * len(names),
    ]
    reach: dict[str, float | None] = {}
    for n in names:
        ok = [b for b in args.peer_budgets if b in finals[n] and len(finals[n][b]) ==
              len(args.peer_seeds) and statistics.fmean(finals[n][b]) <= args.kl_goal]
        reach[n] = min(ok) if ok else None
    for budget in args.peer_budgets:
        cells = []
        for n in names:
            v = finals[n].get(budget, [])
            if len(v) == len(args.peer_seeds):
                sd = statistics.stdev(v) if len(v) > 1 else 0.0
                cells.append(f"{statistics.fmean(v):.4f} ± {sd:.4f} "
                             f"({statistics.fmean(iters[n][budget]):.0f})")
            else:
                cells.append(f"failed: {errors.get(n, '?')}")
        lines.append(f"| {budget:g} | " + " | ".join(cells) + " |")
    lines += ["", f"KL with log Z over the whole plane; the largest model mass outside the "
              f"evaluation box in any of these runs: {outside:.1e}."]
    return lines, {"reach": reach, "finals": finals}


def _verdicts(args: argparse.Namespace, reach: dict[str, float | None]) -> list[str]:
    """Like-for-like verdicts: the smallest budget whose mean final KL (over the seeds) is
    ≤ the goal, per pair and for each library's best method."""
    def find(prefix: str) -> str:
        return next(k for k in reach if k.startswith(prefix))

    def when(b: float | None) -> str:
        return "never (within " + ", ".join(f"{x:g}" for x in args.peer_budgets) + " s)" \
            if b is None else f"{b:g} s"

    def verdict(ours: float | None, theirs: float | None) -> str:
        if ours == theirs:
            return "tie"
        if theirs is None or (ours is not None and ours < theirs):
            return "ebmlab faster"
        return "TorchEBM faster"

    lines = [f"Smallest budget whose mean final KL over seeds {args.peer_seeds} is ≤ "
             f"{args.kl_goal} (like for like):", ""]
    for label, ours_prefix, theirs_prefix in PAIRS:
        ours, theirs = reach[find(ours_prefix)], reach[find(theirs_prefix)]
        lines.append(f"- {label}: ebmlab {when(ours)}, TorchEBM {when(theirs)} — "
                     f"**{verdict(ours, theirs)}**")
    best = {lib: min((b for k, b in reach.items() if k.startswith(lib) and b is not None),
                     default=None) for lib in ("ebmlab", "TorchEBM")}
    lines.append(f"- best vs best: ebmlab {when(best['ebmlab'])}, TorchEBM "
                 f"{when(best['TorchEBM'])} — **{verdict(best['ebmlab'], best['TorchEBM'])}**")
    return lines + [""]


# -- report -------------------------------------------------------------------------------------
def fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "–"
    if not math.isfinite(v):
        return str(v)
    if v != 0 and abs(v) < 10 ** -digits:
        return f"{v:.1e}"
    return f"{v:.{digits}f}"


def quality(d: dict[str, Any]) -> str:
    if not d:
        return "–"
    if "error" in d:
        return "diverged"
    return " / ".join(fmt(d.get(k), digits) for k, digits in
                      (("mmd2", 4), ("kde_kl", 2), ("sharp", 2)) if k in d)


def results_table(results: list[Result], floors: dict[str, dict[str, float]]) -> list[str]:
    lines = [
        "| data | method | s | iterations | KL (nats) | mass outside | test NLL "
        "| short-run samples | long-run from data | long-run from noise | d_st mean ± sd |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    shown: set[str] = set()
    for r in results:
        if r.data not in shown and r.data in floors:
            shown.add(r.data)
            q = quality(floors[r.data])
            lines.append(f"| {r.data} | *exact samples (floor)* | | | 0 | | | {q} | {q} | {q} "
                         "| |")
        if r.error is not None:
            dst = "–" if r.d_st is None else f"{r.d_st[0]:+.3f} ± {r.d_st[1]:.3f}"
            lines.append(f"| {r.data} | {r.contender.label} | {r.step:g} | {r.iterations} | "
                         f"failed: {r.error} | | | | | | {dst} |")
            continue
        dst = "–" if r.d_st is None else f"{r.d_st[0]:+.3f} ± {r.d_st[1]:.3f}"
        lines.append(
            f"| {r.data} | {r.contender.label} | {r.step:g} | {r.iterations} | {fmt(r.kl)} | "
            f"{fmt(r.mass_outside)} | {fmt(r.nll)} | {quality(r.short)} | {quality(r.long_data)} | "
            f"{quality(r.long_noise)} | {dst} |")
    return lines


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def report(args: argparse.Namespace, results: list[Result], floors: dict[str, dict[str, float]],
           peer: tuple[list[str], dict], elapsed: float) -> str:
    command = "python bench/learning.py " + " ".join(shlex.quote(a) for a in args.argv)
    lines = [
        "# Learning benchmark: ML methods at a fixed wall-clock budget",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"- {platform.platform()}, Python {platform.python_version()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{os.cpu_count()} cores visible",
        f"- {time.strftime('%Y-%m-%d')}; ebmlab {version('ebmlab')}, torchebm "
        f"{version('torchebm')}; seed {args.seed}"
        f"{'' if args.no_peer else f' (peer: seeds {args.peer_seeds})'}; "
        f"wall time {elapsed:.0f} s",
        f"- budget {args.budget:g} s of training per run (cosine learning rate over that "
        f"time); quadrature on {args.n_grid}² cells",
        f"- shared settings: `{' '.join(COMMON)}`",
        "- contenders (`sampler.step_size` = s from the table):",
    ]
    for c in (c for c in CONTENDERS if c.key in args.methods.split(",")):
        step = (f"s = {c.step:g}" if c.step is not None
                else "s = the data set's temperature-1 step (column s)")
        lines.append(f"  - {c.label}: `{' '.join(c.overrides)}`, {step}")
    lines += [
        "",
        "Columns: *KL* = exact KL(p_data ‖ p_θ) by quadrature (moons has no closed-form "
        "density: see the test NLL); *short-run samples* = 1000 of the method's own "
        "negatives (K steps from noise, the replay buffer or the data); *long-run* = the "
        "chains of `Trainer.long_run_check()`, about "
        f"{args.longrun_steps} steps from test data and from noise. Each sample cell is "
        "`MMD² / KDE-KL / sharp KDE-KL`: MMD² (RBF, median bandwidth) against 1000 test "
        "points; KDE-KL = `ebmlab.evaluate.sample_quality.kde_kl`, KL(p_data ‖ KDE) with "
        "Scott's bandwidth; sharp KDE-KL = the same with a fixed bandwidth of about half "
        f"the data's local scale ({', '.join(f'{k} {v:g}' for k, v in SHARP_H.items())}). "
        "Scott's rule over-smooths these multimodal sets so much that exact samples score "
        "0.6-1.2 nats (the *exact samples* row is the floor of each column); the sharp "
        "version separates good samples from collapsed or drifting ones. *d_st* = mean "
        "U(data) − mean U(negatives) over the second half of training.",
        "",
        *results_table(results, floors),
        "",
    ]
    if args.no_peer:
        return "\n".join(lines)
    lines += [
        "## Peer: TorchEBM contrastive divergence on 8gaussians",
        "",
        "TorchEBM's PCD gets exactly the settings of ebmlab's persistent run and TorchEBM's "
        "CD those of ebmlab's CD-5: the same `MLPEnergy` and initial weights, standardised "
        "data, batch, Adam and a cosine schedule over the budget (of its own training "
        "time), Langevin step s and K, temperature 1 (`noise_scale=1`), `energy_reg_weight` "
        "= ebmlab's `method.energy_penalty` (0). TorchEBM keeps its own persistence scheme: "
        "a buffer of the same size, filled with 0.01·N(0, I) and 100 warm-up steps, "
        "stratified reads, FIFO write-back, `new_sample_ratio=0.05` (5 % of the chains "
        "read per iteration get 0.01·N(0, I) added: a jitter, no chain is ever restarted), "
        "while ebmlab's buffer is filled from U(−2.5, 2.5)², read at random, written back "
        "in place, and restarts 5 % of the chains it hands out from that uniform noise. "
        "For every budget and seed the "
        f"four trainings start afresh and run interleaved in {args.slice:g} s slices "
        "(shuffled order) in one process, so machine load hits them alike; the final exact "
        "KL (ebmlab's quadrature, through `DataSpaceEnergy`) is scored outside the timed "
        "slices. Final KL, not the best KL seen mid-run: mid-training KL swings by 0.2-2 "
        "nats while the learning rate is high, and a user gets the end of the schedule.",
        "",
        *peer[0],
        "",
    ]
    if peer[1]:
        lines += _verdicts(args, peer[1]["reach"])
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke test: short budgets, coarse quadrature (< 3 minutes)")
    p.add_argument("--budget", type=float, default=None,
                   help="training seconds per run (default 60; 3 with --quick)")
    p.add_argument("--peer-budgets", type=float, nargs="+", default=None,
                   help="training budgets (s) of the TorchEBM comparison, each a fresh "
                   "training (default 5 10 20 40 80; 3 6 with --quick)")
    p.add_argument("--slice", type=float, default=0.5, help="interleaving slice (s)")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated, from {[c.key for c in CONTENDERS]}")
    p.add_argument("--no-peer", action="store_true", help="skip the TorchEBM comparison")
    p.add_argument("--longrun-steps", type=int, default=None,
                   help="long-run chain length (default 2000; 200 with --quick)")
    p.add_argument("--n-grid", type=int, default=None,
                   help="quadrature cells per axis (default 500; 200 with --quick)")
    p.add_argument("--kl-goal", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peer-seeds", type=int, nargs="+", default=None,
                   help="seeds of the TorchEBM comparison (default 0 1 2; 0 with --quick)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE.parent / "docs" / "results" / "learning.md",
                   help="the report (default docs/results/learning.md, quoted by the README)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    q = args.quick
    args.budget = args.budget if args.budget is not None else (3.0 if q else 60.0)
    args.peer_budgets = args.peer_budgets or ([3.0, 6.0] if q else [5.0, 10.0, 20.0, 40.0, 80.0])
    args.peer_seeds = args.peer_seeds or ([0] if q else [0, 1, 2])
    args.longrun_steps = args.longrun_steps or (200 if q else 2000)
    args.n_grid = args.n_grid or (200 if q else 500)
    unknown = set(args.datasets.split(",")) - set(DATASETS)
    if unknown:
        p.error(f"unknown data set(s) {sorted(unknown)}; choose from {DATASETS}")
    keys = {c.key for c in CONTENDERS}
    if set(args.methods.split(",")) - keys:
        p.error(f"--methods: choose from {sorted(keys)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    methods = args.methods.split(",")
    results = []
    for data in args.datasets.split(","):
        for c in CONTENDERS:
            if c.key not in methods:
                continue
            r = run_one(data, c, args)
            print(f"[{time.perf_counter() - started:5.0f} s] {data:12s} {c.key:17s} "
                  f"{r.iterations:6d} it  KL {fmt(r.kl)}  NLL {fmt(r.nll)}"
                  + (f"  ({r.error})" if r.error else ""), file=sys.stderr, flush=True)
            results.append(r)
    peer: tuple[list[str], dict] = ([], {}) if args.no_peer else peer_comparison(args)
    floors = {d: reference(d, 1000) for d in args.datasets.split(",")}
    text = report(args, results, floors, peer, time.perf_counter() - started)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

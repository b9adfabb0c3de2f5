"""Langevin samplers side by side: ebmlab vs a bare autograd loop vs TorchEBM and ebmkit.

Every contender runs the same update ``x ← x − s·∇U(x) + σ·ξ`` on the same energy,
the same chains and the same number of steps, in one process, with the
contenders interleaved (in a shuffled order) in every repetition, so that load
on a shared machine hits them alike. Reported: the median time per step and
the median over repetitions of each contender's time divided by the bare loop's
time *in the same repetition* (with its interquartile range), and the minor
page faults per step (on CPU, glibc handing freed activation memory back to
the OS and faulting it in again every step is a large, allocation-pattern
dependent cost: see ``--malloc``). Peak memory at 10 vs 1000 steps is taken in
one fresh subprocess per configuration.

    python bench/samplers.py --quick                # smoke test, under a minute
    python bench/samplers.py                        # the full table (a few minutes)
    python bench/samplers.py --reps 30 --threads 1  # steadier on a noisy machine
    python bench/samplers.py --device cuda

The peers are optional (``pip install --no-deps torchebm==0.8.9 ebmkit==0.16.0``,
their only requirement is torch); a missing one is reported, not fatal.
Results go to stdout and to ``bench/out/samplers.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import inspect
import json
import math
import os
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ebmlab.energies import closed_form
from ebmlab.energies.mlp import ConvEnergy, MLPEnergy
from ebmlab.samplers import Langevin
from ebmlab.samplers.base import frozen

HERE = Path(__file__).resolve().parent
BARE = "bare loop (autograd)"
Run = Callable[[Tensor, int], Tensor]  # (x0, n_steps) -> final states


# -- workloads ------------------------------------------------------------------------
@dataclass
class Workload:
    key: str
    title: str
    make_energy: Callable[[], nn.Module]
    shape: tuple[int, ...]  # one chain
    n_chains: int
    n_steps: int
    step_size: float
    noise_scale: float

    def build(self, device: torch.device, seed: int = 0) -> tuple[nn.Module, Tensor]:
        torch.manual_seed(seed)
        energy = self.make_energy().to(device)
        x0 = torch.randn(self.n_chains, *self.shape, device=device)
        return energy, x0


def workloads(quick: bool) -> dict[str, Workload]:
    s = 0.01
    return {
        "mlp": Workload(
            "mlp", "MLP 2→128→128→1 (MLPEnergy(2, 128, 2))", lambda: MLPEnergy(2, 128, 2),
            (2,), 1000, 40 if quick else 200, s, math.sqrt(2 * s),
        ),
        # Short-run image style: big step, decoupled small noise (temperature ≪ 1).
        "conv": Workload(
            "conv", "ConvNet on 1×28×28 (ConvEnergy(1, channels=16, n_blocks=3))",
            lambda: ConvEnergy(1, channels=16, n_blocks=3),
            (1, 28, 28), 100, 5 if quick else 50, 1.0, 0.01,
        ),
    }


# -- contenders -----------------------------------------------------------------------
def bare_loop(energy: nn.Module, s: float, sigma: float) -> Run:
    """The loop a user writes: parameters left requiring grad, a new tensor every step."""

    def run(x0: Tensor, n_steps: int) -> Tensor:
        x = x0.clone()
        for _ in range(n_steps):
            x.requires_grad_(True)
            e = energy(x).sum()
            g = torch.autograd.grad(e, x)[0]
            x = (x - s * g + sigma * torch.randn_like(x)).detach()
        return x

    return run


def bare_frozen_inplace(energy: nn.Module, s: float, sigma: float) -> Run:
    """Parameters frozen for the run, ``x`` and a noise buffer updated in place."""

    def run(x0: Tensor, n_steps: int) -> Tensor:
        with frozen(energy):
            x = x0.clone()
            noise = torch.empty_like(x)
            for _ in range(n_steps):
                xg = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(energy(xg).sum(), xg)
                x.add_(g, alpha=-s).add_(noise.normal_(), alpha=sigma)
        return x

    return run


def bare_compiled(energy: nn.Module, s: float, sigma: float, chunk: int) -> Run:
    """``torch.compile`` of ``chunk`` whole steps (gradient by ``torch.func``, no autograd
    engine); the noise is drawn outside, step by step, so the stream is the eager one."""

    def value(y: Tensor) -> tuple[Tensor, Tensor]:
        u = energy(y)
        return u.sum(), u

    def steps(x: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        us = []
        for k in range(noise.shape[0]):
            g, (_, u) = torch.func.grad_and_value(value, has_aux=True)(x)
            x = x - s * g + sigma * noise[k]
            us.append(u)
        return x, torch.stack(us)

    compiled = torch.compile(steps, dynamic=False)

    def run(x0: Tensor, n_steps: int) -> Tensor:
        with frozen(energy):
            x = x0.clone()
            buf = torch.empty((chunk, *x.shape), dtype=x.dtype, device=x.device)
            done = 0
            while done < n_steps:
                k = min(chunk, n_steps - done)
                noise = buf[:k]
                for j in range(k):
                    noise[j].normal_()
                x, _ = (compiled if k == chunk else steps)(x, noise)
                done += k
            if not bool(torch.isfinite(x).all()):
                raise FloatingPointError("non-finite states")
        return x

    return run


def ebmlab_langevin(energy: nn.Module, s: float, sigma: float, **options: object) -> Run:
    sampler = Langevin(s, noise_scale=sigma, **options)  # type: ignore[arg-type]

    def run(x0: Tensor, n_steps: int) -> Tensor:
        return sampler.run(energy, x0, n_steps)

    return run


def ebmlab_autograd(energy: nn.Module, s: float, sigma: float) -> Run:
    """ebmlab's Langevin with every gradient by autograd (``closed_form.disabled()``)."""
    sampler = Langevin(s, noise_scale=sigma)

    def run(x0: Tensor, n_steps: int) -> Tensor:
        with closed_form.disabled():
            return sampler.run(energy, x0, n_steps)

    return run


def torchebm_langevin(energy: nn.Module, s: float, sigma: float) -> Run:
    """TorchEBM 0.8.9: ``x ← x − h·∇U + ν·√(2h)·ξ`` (Euler–Maruyama with diffusion ν²),
    so ``h = s`` and ``ν = σ/√(2s)``; the model must be a ``BaseModel`` (it supplies
    ``gradient``), hence the thin wrapper."""
    from torchebm.core import BaseModel
    from torchebm.samplers import LangevinDynamics

    x_like = next(energy.parameters())

    class Wrapped(BaseModel):
        def __init__(self, net: nn.Module) -> None:
            super().__init__(dtype=x_like.dtype, device=x_like.device)
            self.net = net

        def forward(self, x: Tensor) -> Tensor:
            return self.net(x)

    if sigma <= 0:
        raise ValueError("TorchEBM needs noise_scale > 0")
    sampler = LangevinDynamics(
        Wrapped(energy), step_size=s, noise_scale=sigma / math.sqrt(2 * s),
        dtype=x_like.dtype, device=x_like.device,
    )

    def run(x0: Tensor, n_steps: int) -> Tensor:
        return sampler.sample(x=x0, n_steps=n_steps)

    return run


def ebmkit_langevin(energy: nn.Module, s: float, sigma: float) -> Run:
    """ebmkit 0.16.0 (``import ebm``): ``x ← x − ε·∇E + σ·ξ``, the same parametrisation."""
    from ebm.samplers import LangevinDynamics

    sampler = LangevinDynamics(step_size=s, noise_scale=sigma)

    def run(x0: Tensor, n_steps: int) -> Tensor:
        return sampler.sample(energy, x0, steps=n_steps)

    return run


@dataclass
class Contender:
    name: str
    build: Callable[[nn.Module, float, float], Run]
    note: str = ""
    compiled: bool = False
    memory: bool = True  # include in the memory probes


def contenders(compile_: bool) -> list[Contender]:
    out = [
        Contender(BARE, bare_loop, "`requires_grad_` on x, params left requiring grad"),
        Contender("bare, frozen params + in-place", bare_frozen_inplace, "for reference"),
        Contender("ebmlab Langevin", ebmlab_langevin, "`Langevin(s, σ).run(U, x0, n)`"),
    ]
    if hasattr(closed_form, "disabled"):
        out.append(Contender("ebmlab Langevin, autograd", ebmlab_autograd,
                             "the same in `closed_form.disabled()`", memory=False))
    if compile_ and "compile" in inspect.signature(Langevin).parameters:
        out.append(Contender(
            "ebmlab Langevin(compile=True)",
            lambda e, s, sig: ebmlab_langevin(e, s, sig, compile=True),
            "ebmlab's own compiled path", compiled=True, memory=False,
        ))
    out += [
        Contender("TorchEBM LangevinDynamics", torchebm_langevin,
                  "`noise_scale = σ/√(2s)`, `BaseModel` wrapper"),
        Contender("ebmkit LangevinDynamics", ebmkit_langevin, "same (s, σ)"),
    ]
    if compile_:
        out += [
            Contender("bare + torch.compile (1 step)",
                      lambda e, s, sig: bare_compiled(e, s, sig, 1), "steady state",
                      compiled=True, memory=False),
            Contender("bare + torch.compile (8-step chunks)",
                      lambda e, s, sig: bare_compiled(e, s, sig, 8), "steady state",
                      compiled=True, memory=False),
        ]
    return out


# -- measuring ------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def tune_malloc(mode: str) -> str:
    """``as-is``: leave glibc alone. ``primed``: allocate and free one 32 MB block, which
    raises glibc's *dynamic* mmap threshold to 32 MB and its trim threshold to 64 MB,
    as any program that once frees such a tensor does. ``tuned``: ``mallopt`` both
    thresholds to 1 GiB (freed memory is then never handed back)."""
    if mode == "primed":
        block = torch.empty(32 * 2**20 - 2**16, dtype=torch.uint8)
        block.fill_(0)
        del block
    elif mode == "tuned":
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 2**30)
        libc.mallopt(m_trim_threshold, 2**30)
    return mode


@dataclass
class Timing:
    times: list[float] = field(default_factory=list)  # seconds per run
    faults: list[float] = field(default_factory=list)  # per step
    error: str = ""
    compile_s: float | None = None


def time_workload(
    wl: Workload, roster: list[Contender], device: torch.device, reps: int, seed: int
) -> tuple[dict[str, Timing], dict[str, float]]:
    energy, x0 = wl.build(device)
    runs: dict[str, Run] = {}
    results = {c.name: Timing() for c in roster}
    for c in roster:
        try:
            runs[c.name] = c.build(energy, wl.step_size, wl.noise_scale)
        except Exception as exc:  # a missing peer, an unsupported option
            results[c.name].error = f"{type(exc).__name__}: {exc}"[:120]

    # Same seed, a few steps (a whole compiled chunk): every contender must reproduce
    # the bare loop's numbers up to rounding.
    agreement: dict[str, float] = {}
    n_check = 8
    torch.manual_seed(1234)
    ref = runs[BARE](x0, n_check) if BARE in runs else None
    for name, run in list(runs.items()):
        try:
            times = []
            compiled = next(c for c in roster if c.name == name).compiled
            for _ in range(3 if compiled else 1):  # the first run compiles, then warm
                t0 = time.perf_counter()
                run(x0, wl.n_steps)
                sync(device)
                times.append(time.perf_counter() - t0)
            if compiled:
                results[name].compile_s = times[0] - times[-1]
            if ref is not None:
                torch.manual_seed(1234)
                out = run(x0, n_check)
                agreement[name] = float((out - ref).abs().max())
        except Exception as exc:
            results[name].error = f"{type(exc).__name__}: {exc}"[:120]
            del runs[name]

    order = list(runs)
    rng = random.Random(seed)
    for _ in range(reps):
        rng.shuffle(order)
        for name in order:
            sync(device)
            f0 = minor_faults()
            t0 = time.perf_counter()
            runs[name](x0, wl.n_steps)
            sync(device)
            results[name].times.append(time.perf_counter() - t0)
            results[name].faults.append((minor_faults() - f0) / wl.n_steps)
    return results, agreement


def child_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--device", args.device, "--malloc", args.malloc,
             "--compile" if args.compile else "--no-compile"]
    if args.threads:
        flags += ["--threads", str(args.threads)]
    if args.quick:
        flags.append("--quick")
    return flags


def child_main(args: argparse.Namespace) -> None:
    """Child process of ``--isolate``: time one contender alone, print its timings."""
    wl = workloads(args.quick)[args.workloads]
    roster = [c for c in contenders(args.compile) if c.name == args.child]
    res, _ = time_workload(wl, roster, torch.device(args.device), args.reps, args.seed)
    t = res[args.child]
    print("CHILD " + json.dumps({"times": t.times, "faults": t.faults, "error": t.error,
                                 "compile_s": t.compile_s}))


def time_isolated(
    wl: Workload, roster: list[Contender], args: argparse.Namespace, seed: int
) -> tuple[dict[str, Timing], dict[str, float]]:
    """Every contender in its own fresh process (its own allocator state), ``--isolate``
    rounds in a shuffled order; per round, each contributes its median run time."""
    results = {c.name: Timing() for c in roster}
    rng = random.Random(seed)
    order = [c.name for c in roster]
    for r in range(args.isolate):
        rng.shuffle(order)
        for name in order:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name,
                   "--workloads", wl.key, "--reps", str(args.reps),
                   "--seed", str(seed + r), *child_flags(args)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("CHILD ")]
            t = results[name]
            if proc.returncode or not line:
                t.error = (proc.stderr.strip().splitlines() or ["failed"])[-1][:120]
                continue
            got = json.loads(line[-1][6:])
            if got["error"] or not got["times"]:
                t.error = got["error"] or "no timings"
                continue
            t.times.append(statistics.median(got["times"]))
            t.faults.append(statistics.median(got["faults"]))
            t.compile_s = got["compile_s"]
    # A contender that failed in some round is reported as failed.
    for t in results.values():
        if t.error:
            t.times.clear()
    return results, {}


# -- memory probes (one fresh process per configuration) -------------------------------
def _status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def probe_main(args: argparse.Namespace) -> None:
    """Child process: run one contender on the MLP workload and report its peak memory."""
    device = torch.device(args.device)
    wl = workloads(False)["mlp"]
    roster = {c.name: c for c in contenders(False)}
    energy, x0 = wl.build(device)
    run = roster[args.probe].build(energy, wl.step_size, wl.noise_scale)
    run(x0, 2)  # lazy initialisation is not what we measure
    sync(device)
    base = _status_kib("VmRSS")
    reset = False
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        reset = True
    except OSError:
        pass
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda_base = torch.cuda.memory_allocated(device)
    run(x0, args.probe_steps)
    sync(device)
    peak = _status_kib("VmHWM") if reset else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {"peak_kib": peak, "base_kib": base, "hwm_reset": reset}
    if device.type == "cuda":
        out["cuda_peak"] = torch.cuda.max_memory_allocated(device)
        out["cuda_base"] = cuda_base
    print("PROBE " + json.dumps(out))


def memory_probes(
    names: list[str], steps: tuple[int, int], args: argparse.Namespace
) -> dict[str, dict[int, dict | str]]:
    out: dict[str, dict[int, dict | str]] = {}
    for name in names:
        out[name] = {}
        for n in steps:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", name,
                   "--probe-steps", str(n), *child_flags(args)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
            if proc.returncode or not line:
                out[name][n] = (proc.stderr.strip().splitlines() or ["failed"])[-1][:100]
            else:
                out[name][n] = json.loads(line[-1][6:])
    return out


# -- report ---------------------------------------------------------------------------
def fmt_ratio(times: list[float], bare: list[float]) -> str:
    ratios = sorted(t / b for t, b in zip(times, bare, strict=True))
    med = statistics.median(ratios)
    if len(ratios) >= 4:
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        return f"{med:.3f} [{q1:.2f}–{q3:.2f}]"
    return f"{med:.3f}"


def ratio_of(times: list[float], bare: list[float]) -> float:
    return statistics.median(t / b for t, b in zip(times, bare, strict=True))


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def report(
    args: argparse.Namespace,
    wls: list[Workload],
    timings: dict[str, tuple[dict[str, Timing], dict[str, float]]],
    roster: list[Contender],
    memory: dict[str, dict[int, dict | str]],
    mem_steps: tuple[int, int],
    elapsed: float,
) -> str:
    device = torch.device(args.device)
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    cmd = shlex.join([Path(sys.executable).name, *sys.argv])
    lines = [
        "# Langevin samplers, side by side",
        "",
        f"- command: `{cmd}` (cwd `{Path.cwd()}`)",
        f"- torch {torch.__version__}, threads {torch.get_num_threads()}, device {device} "
        f"({dev}), Python {platform.python_version()}",
        f"- {time.strftime('%Y-%m-%d')}; ebmlab {version('ebmlab')}, torchebm "
        f"{version('torchebm')}, ebmkit {version('ebmkit')}",
        (f"- isolated: every contender in its own fresh process, {args.isolate} rounds "
         f"(shuffled) of {args.reps} runs; per round its median run counts once"
         if args.isolate else
         f"- repetitions {args.reps} (contenders interleaved in one process, shuffled "
         "each repetition)") + f"; malloc `{args.malloc}`; wall time {elapsed:.0f} s",
        "- ratio: median over repetitions (rounds) of time / bare-loop time in the same "
        "repetition (round) [interquartile range]; < 1 is faster",
        f"- load average at start {args.load:.2f} on {os.cpu_count()} CPUs (other processes "
        "competing for the cores make 2-thread timings jumpy; `--threads 1` is steadier)",
        "- minor faults/step: pages the kernel had to map again, mostly freed activations "
        "that glibc handed back; once anything in the process frees a 32 MiB block "
        "(`--malloc primed`), they stop, for every contender alike",
        "",
        "How each is called (same energy, x0, s, σ, n; generator-free, global RNG):",
        "",
        "- bare: `x.requires_grad_(True); g = autograd.grad(U(x).sum(), x)[0]; "
        "x = (x - s*g + σ*randn_like(x)).detach()`",
        "- ebmlab: `Langevin(s, noise_scale=σ).run(U, x0, n)`",
        "- TorchEBM 0.8.9: `LangevinDynamics(BaseModel wrapper of U, step_size=s, "
        "noise_scale=σ/√(2s)).sample(x=x0, n_steps=n)` (its noise is `noise_scale·√(2s)·ξ`)",
        "- ebmkit 0.16.0: `ebm.samplers.LangevinDynamics(step_size=s, noise_scale=σ)"
        ".sample(U, x0, steps=n)`",
        "",
    ]
    for wl in wls:
        res, agree = timings[wl.key]
        bare = res[BARE].times
        lines += [
            f"## {wl.title}: {wl.n_chains} chains, {wl.n_steps} steps, "
            f"s = {wl.step_size:g}, σ = {wl.noise_scale:.4g}",
            "",
            "| workload | contender | median ms/step | ratio to bare loop | minor faults/step "
            "| max abs diff vs bare (8 steps, same seed) | notes |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for c in roster:
            t = res[c.name]
            if t.error or not t.times:
                lines.append(f"| {wl.key} | {c.name} | n/a | n/a | | | {t.error} |")
                continue
            note = c.note
            if t.compile_s is not None:
                note += f"; compile {t.compile_s:.1f} s excluded"
            lines.append(
                f"| {wl.key} | {c.name} | {statistics.median(t.times) / wl.n_steps * 1e3:.3f} "
                f"| {fmt_ratio(t.times, bare)} | {statistics.median(t.faults):.0f} "
                f"| {f'{agree[c.name]:.1e}' if c.name in agree else '—'} | {note} |"
            )
        lines.append("")

    if memory:
        a, b = mem_steps
        lines += [
            f"## Peak memory, MLP workload, {a} vs {b} steps (fresh process each)",
            "",
            f"| contender | peak RSS {a} steps (MiB) | peak RSS {b} steps (MiB) | ratio "
            f"| growth over pre-run RSS, {a} / {b} steps (MiB) |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, per in memory.items():
            pa, pb = per.get(a), per.get(b)
            if not isinstance(pa, dict) or not isinstance(pb, dict):
                lines.append(f"| {name} | {pa} | {pb} | n/a | |")
                continue
            if device.type == "cuda":
                ca, cb = pa["cuda_peak"], pb["cuda_peak"]
                lines.append(
                    f"| {name} (CUDA allocated) | {ca / 2**20:.1f} | {cb / 2**20:.1f} "
                    f"| {cb / max(ca, 1):.3f} | {(ca - pa['cuda_base']) / 2**20:.1f} / "
                    f"{(cb - pb['cuda_base']) / 2**20:.1f} |"
                )
            lines.append(
                f"| {name} | {pa['peak_kib'] / 1024:.1f} | {pb['peak_kib'] / 1024:.1f} "
                f"| {pb['peak_kib'] / pa['peak_kib']:.3f} "
                f"| {(pa['peak_kib'] - pa['base_kib']) / 1024:.1f} / "
                f"{(pb['peak_kib'] - pb['base_kib']) / 1024:.1f} |"
            )
        lines.append("")

    breakeven = compile_breakeven(wls, timings)
    if breakeven:
        lines += ["## When does compile=True pay off?", "",
                  "Break-even run length: the one-off compile time over the time a compiled "
                  "step saves against the eager one (medians above); a run of *n* steps "
                  "finishes sooner compiled only if *n* exceeds it. The compile happens once "
                  "per process, energy and chain shape (then every run reuses it).", "",
                  "| workload | eager ms/step | compiled ms/step | compile s | break-even steps |",
                  "|---|---:|---:|---:|---:|", *breakeven, ""]
    goals = goal_lines(wls, timings, memory, mem_steps)
    if goals:
        lines += ["## Goals (issue)", "", *goals, ""]
    return "\n".join(lines)


def compile_breakeven(wls: list[Workload],
                      timings: dict[str, tuple[dict[str, Timing], dict[str, float]]]) -> list[str]:
    out = []
    for wl in wls:
        res, _ = timings[wl.key]
        eager, comp = res.get("ebmlab Langevin"), res.get("ebmlab Langevin(compile=True)")
        if eager is None or comp is None or not eager.times or not comp.times \
                or comp.compile_s is None:
            continue
        te = statistics.median(eager.times) / wl.n_steps
        tc = statistics.median(comp.times) / wl.n_steps
        even = f"{comp.compile_s / (te - tc):,.0f}" if te > tc else "never (not faster)"
        out.append(f"| {wl.key} | {te * 1e3:.3f} | {tc * 1e3:.3f} | {comp.compile_s:.1f} "
                   f"| {even} |")
    return out


def goal_lines(
    wls: list[Workload],
    timings: dict[str, tuple[dict[str, Timing], dict[str, float]]],
    memory: dict[str, dict[int, dict | str]],
    mem_steps: tuple[int, int],
) -> list[str]:
    targets = {"mlp": 0.9, "conv": 0.9}  # issue 11 §4: eager ≤ 0.9, compiled ≤ 0.8
    compiled_target = 0.8
    peers = ("TorchEBM LangevinDynamics", "ebmkit LangevinDynamics")
    out = []
    compiled_bare = ("bare + torch.compile (8-step chunks)", "bare + torch.compile (1 step)")
    for wl in wls:
        res, _ = timings[wl.key]
        bare = res[BARE].times

        def ratio(name: str, res=res, bare=bare) -> float | None:
            t = res.get(name)
            return ratio_of(t.times, bare) if t is not None and t.times else None

        r = ratio("ebmlab Langevin")
        if r is not None:  # eager against eager: the peers' paths are eager
            ok = "met" if r <= targets[wl.key] else "NOT met"
            line = (f"- {wl.key}, eager vs eager: ebmlab Langevin {r:.3f} × bare "
                    f"(goal ≤ {targets[wl.key]}): {ok}")
            for peer in peers:
                rp = ratio(peer)
                if rp is not None:
                    line += f"; {'faster' if r < rp else 'NOT faster'} than {peer} ({rp:.3f})"
            out.append(line)
        rc = ratio("ebmlab Langevin(compile=True)")
        if rc is not None:  # compiled against compiled: neither peer has a compiled path
            line = (f"- {wl.key}, compiled vs compiled: ebmlab Langevin(compile=True) "
                    f"{rc:.3f} × bare (goal ≤ {compiled_target}: "
                    f"{'met' if rc <= compiled_target else 'NOT met'})")
            for name in compiled_bare:
                rb = ratio(name)
                if rb is not None:
                    line += f"; {name} {rb:.3f}"
            out.append(line + " (TorchEBM and ebmkit have no compiled path)")
    per = memory.get("ebmlab Langevin", {})
    a, b = mem_steps
    if isinstance(per.get(a), dict) and isinstance(per.get(b), dict):
        r = per[b]["peak_kib"] / per[a]["peak_kib"]
        out.append(f"- memory: ebmlab peak RSS {b} / {a} steps = {r:.3f} (goal ≤ 1.1): "
                   f"{'met' if r <= 1.1 else 'NOT met'}")
    return out


# -- main -----------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few repetitions, short runs")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--reps", type=int, default=None, help="repetitions (15; 3 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--workloads", default="mlp,conv", help="comma list of: mlp, conv")
    p.add_argument("--compile", dest="compile", action="store_true", default=None,
                   help="add the compiled contenders: torch.compile'd bare loops and, if "
                   "Langevin has it, compile=True (default: on, off with --quick)")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    p.add_argument("--malloc", default="as-is", choices=["as-is", "primed", "tuned"],
                   help="glibc allocator state for the whole run (see tune_malloc)")
    p.add_argument("--seed", type=int, default=0, help="seed of the interleaving order")
    p.add_argument("--out", type=Path, default=HERE.parent / "docs" / "results" / "samplers.md",
                   help="the report (default docs/results/samplers.md, quoted by the README)")
    p.add_argument("--isolate", type=int, default=0, metavar="ROUNDS",
                   help="time every contender in its own fresh process, ROUNDS rounds of "
                   "--reps runs each (shows per-process effects such as the allocator's)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--probe", help=argparse.SUPPRESS)
    p.add_argument("--probe-steps", type=int, default=10, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.reps is None:
        args.reps = 3 if args.quick else 15
    if args.compile is None:
        args.compile = not args.quick
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available")
    args.load = os.getloadavg()[0]
    tune_malloc(args.malloc)
    if args.probe:
        probe_main(args)
        return
    if args.child:
        child_main(args)
        return

    start = time.perf_counter()
    device = torch.device(args.device)
    all_wls = workloads(args.quick)
    keys = [k.strip() for k in args.workloads.split(",") if k.strip()]
    unknown = sorted(set(keys) - set(all_wls))
    if unknown:
        sys.exit(f"unknown workload(s) {unknown}; choose from {sorted(all_wls)}")
    wls = [all_wls[k] for k in keys]
    roster = contenders(args.compile)
    timings = {}
    for i, wl in enumerate(wls):
        how = f"{args.isolate} rounds of fresh processes × " if args.isolate else ""
        print(f"[bench] {wl.key}: {len(roster)} contenders × {how}{args.reps} repetitions",
              file=sys.stderr, flush=True)
        if args.isolate:
            timings[wl.key] = time_isolated(wl, roster, args, args.seed + i)
        else:
            timings[wl.key] = time_workload(wl, roster, device, args.reps, args.seed + i)

    mem_steps = (10, 1000)
    memory: dict[str, dict[int, dict | str]] = {}
    if not args.no_memory:
        names = [c.name for c in roster if c.memory]
        if args.quick:
            names = [BARE, "ebmlab Langevin"]
        print(f"[bench] memory probes: {len(names)} contenders × {mem_steps}",
              file=sys.stderr, flush=True)
        memory = memory_probes(names, mem_steps, args)

    text = report(args, wls, timings, roster, memory, mem_steps, time.perf_counter() - start)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"[bench] written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

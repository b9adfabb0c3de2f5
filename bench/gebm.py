"""GEBM benchmark: the claims of the Generalized EBM paper, at CPU scale.

1. **Low intrinsic dimension** (the paper's setting). A 2-D toy lifted into R^D by a fixed
   smooth embedding plus noise (``rings_16d``, see ``ebmlab.data.lifted``). One GEBM
   (``configs/gebm_lowdim.toml``: MLP base with a 2-D latent, energy trained with KALE) is
   sampled by: the base alone; each latent sampler (ULA, MALA, HMC, underdamped) at a fixed
   number of gradient evaluations; independent Metropolis–Hastings with the prior as
   proposal (same number of energy evaluations). Against it, an EBM in x-space with the same
   energy network, trained for the same wall time by the library's default learner (CD-10
   with MALA adapted to acceptance 0.6) and sampled by 1000 steps of its MALA from noise.
   Scores: MMD² (RBF, median bandwidth) and the sliced Wasserstein distance SW₂ (500
   directions) between 2000 samples and 2000 held-out points, next to the same numbers for
   2000 other held-out points (the noise floor).
2. **Kinetic vs overdamped** (the paper's figure). A GEBM on the 8 Gaussians
   (``configs/gebm_toy.toml``): its latent posterior has 8 modes. 200 chains from the prior
   per sampler, a fixed budget of gradient evaluations, at temperature 1 and at a lower
   temperature (sharper modes); each decoded state within 3 sd of a mode's centre is
   assigned to it; reported: the number of distinct modes each chain visits (mean, and the
   share of chains that visit more than one), and the pooled occupancy's largest deviation
   from 1/8.
3. **Density estimation, exact.** On 2-D toys, exact KL(p_data ‖ model) by quadrature for
   (a) a spline flow trained by maximum likelihood (``method.name = "flow"``), (b) a GEBM
   with that flow as its base trained with KALE (``configs/gebm_flow_toy.toml``), (c) an
   x-space EBM trained by persistent maximum likelihood (the ``configs/gmm_convergent.toml``
   / ``rings_convergent.toml`` settings). On scikit-learn's wine data (13-D; with the full
   run also breast cancer, 30-D): train and test NLL (nats per example in the data's own
   units) and the test NLL's standard error, flow vs GEBM (log Z of the GEBM by importance
   sampling from its flow base; the se includes that estimate's).

    python bench/gebm.py --quick     # < 10 minutes on 2 cores; last stdout line is JSON
    python bench/gebm.py             # the full tables (~35 min on a busy 2-core machine)

The report goes to ``docs/results/gebm.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ebmlab.config import load_config
from ebmlab.evaluate import mmd2, sliced_wasserstein
from ebmlab.experiment import RunConfig
from ebmlab.methods.gebm import LatentEnergy
from ebmlab.samplers import make_sampler
from ebmlab.samplers.base import frozen
from ebmlab.train import Trainer, TrainingError, start_run

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent / "configs"
QUIET = ["train.progress=false", "train.plot_every=0", "train.ckpt_every=1000000000",
         "train.log_every=1000000000", "train.threads=1"]
N_EVAL = 2000

# Latent samplers of part 1 (latent space has unit scale: the prior is N(0, I)).
LATENT_SAMPLERS = {
    "ula": ("langevin", {"step_size": 0.01}, 1),
    "mala": ("mala", {"step_size": 0.05}, 1),
    "hmc": ("hmc", {"step_size": 0.05, "n_leapfrog": 5}, 5),
    "underdamped": ("underdamped", {"step_size": 0.05, "friction": 1.0}, 1),
    "imh": ("imh", {"scale": 1.0}, 1),  # energy evaluations, no gradients
}
# Part 2: ULA against kinetic samplers at equal gradient evaluations.
MODE_SAMPLERS = {
    "ula": [("langevin", {"step_size": s}, 1) for s in (0.01, 0.05)],
    "underdamped": [("underdamped", {"step_size": h, "friction": 0.5}, 1) for h in (0.05, 0.1)],
    "hmc": [("hmc", {"step_size": e, "n_leapfrog": 10}, 10) for e in (0.05, 0.1)],
}


# -- helpers ------------------------------------------------------------------------------


def train(cfg: RunConfig, out: Path, *, iterations: int | None = None,
          seconds: float | None = None) -> tuple[Trainer, float, str | None]:
    """Train with the trainer's own step until ``iterations`` or ``seconds`` of wall time;
    ``(trainer, seconds, error or None)``."""
    trainer = start_run(cfg, out)
    start = time.perf_counter()
    error = None
    try:
        while True:
            if iterations is not None and trainer.iteration >= iterations:
                break
            if seconds is not None and time.perf_counter() - start >= seconds:
                break
            trainer.train_step()
    except TrainingError as e:
        error = str(e)
    return trainer, time.perf_counter() - start, error


def preset(name: str, *overrides: str) -> RunConfig:
    return load_config(RunConfig, path=CONFIGS / f"{name}.toml", overrides=[*overrides, *QUIET])


def flow_config(*overrides: str) -> RunConfig:
    """The flow of ``configs/gebm_flow_toy.toml`` alone, trained by maximum likelihood."""
    return load_config(RunConfig, overrides=[
        "method.name=flow", "generator.name=flow", "generator.transforms=4",
        "generator.width=64", "generator.depth=2", "train.batch_size=256", "train.lr=1e-3",
        "train.beta1=0.5", "train.lr_schedule=constant", *overrides, *QUIET])


def quality(x: Tensor, test: Tensor) -> dict[str, float]:
    x, test = x.reshape(x.shape[0], -1).cpu(), test.reshape(test.shape[0], -1).cpu()
    if not bool(torch.isfinite(x).all()):
        return {"mmd2": math.nan, "sw2": math.nan}
    return {"mmd2": mmd2(x, test), "sw2": sliced_wasserstein(x, test, n_projections=500)}


def latent_chains(trainer: Trainer, name: str, options: dict[str, Any], steps: int, n: int,
                  seed: int, thin: int | None = None, temperature: float = 1.0
                  ) -> tuple[Tensor, float | None]:
    """Latent chains of the trained GEBM with another sampler (on ``½‖z‖² + E(G(z))/T``):
    decoded final states (or the decoded trajectory every ``thin`` steps, ``(T, n, *shape)``)
    and the mean acceptance."""
    method = trainer.method
    target = method.target()
    energy = LatentEnergy(method.energy, method.base, temperature)
    sampler = make_sampler(name, **options)
    g = torch.Generator().manual_seed(seed)
    z0 = target.init.sample(n, generator=g)
    accepts: list[float] = []

    def record(i: int, state: Any, info: Any) -> None:
        if info.accept_prob is not None:
            accepts.append(float(info.accept_prob.mean()))

    if thin is None:
        z = sampler.run(energy, z0, steps, generator=g, callback=record)
    else:
        z = sampler.trajectory(energy, z0, steps, thin=thin, generator=g, callback=record)
    with torch.no_grad(), frozen(method.base):
        x = method.base(z.reshape(-1, z.shape[-1])).reshape(*z.shape[:-1], -1)
    return trainer.data.to_data_space(x), (float(np.mean(accepts)) if accepts else None)


def fmt(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}g}"


# -- 1. low intrinsic dimension -----------------------------------------------------------


def part_lowdim(args: argparse.Namespace, work: Path) -> tuple[list[str], dict[str, Any]]:
    data = args.lowdim_data
    cfg = preset("gebm_lowdim", f"data.name={data}", f"train.seed={args.seed}")
    trainer, t_gebm, err = train(cfg, work / "lowdim_gebm", iterations=args.iterations)
    if err:
        return [f"GEBM training failed: {err}"], {}
    d = trainer.data
    test = d.to_data_space(d.test[:N_EVAL])
    floor = quality(d.to_data_space(d.test[N_EVAL:2 * N_EVAL]), test)
    rows: list[tuple[str, dict[str, float], str]] = [("held-out data (noise floor)", floor, "")]
    g = torch.Generator().manual_seed(args.seed + 1)
    base = d.to_data_space(trainer.method.sample(N_EVAL, n_steps=0, rng=g))
    rows.append(("base alone, G(z)", quality(base, test), ""))
    scores: dict[str, Any] = {"base": rows[-1][1]}
    for budget in args.grad_budgets:
        for key, (name, options, per_step) in LATENT_SAMPLERS.items():
            steps = max(1, budget // per_step)
            x, acc = latent_chains(trainer, name, options, steps, N_EVAL, args.seed + 2)
            label = f"GEBM, latent {key} ({fmt_opts(options)}), {steps} steps"
            rows.append((label, quality(x, test), "" if acc is None else f"{acc:.2f}"))
            scores[f"{key}@{budget}"] = rows[-1][1]
    # the x-space EBM: the library's default learner (CD-10 with MALA adapted to acceptance
    # 0.6, chosen for thin structures) with the GEBM's energy network, for the GEBM's wall time
    ebm_cfg = load_config(RunConfig, overrides=[
        f"data.name={data}", "model.width=128", "model.depth=3", "model.activation=leaky_relu",
        "train.batch_size=256", "train.lr=5e-4", "train.lr_schedule=constant",
        f"train.seed={args.seed}", *QUIET])
    ebm, t_ebm, err = train(ebm_cfg, work / "lowdim_ebm", seconds=t_gebm)
    if err:
        rows.append((f"x-space EBM, CD-10 with adapted MALA ({t_ebm:.0f} s): failed", {}, ""))
    else:
        g = torch.Generator().manual_seed(args.seed + 3)
        accepts: list[float] = []
        target = ebm.method.target()
        x0 = target.init.sample(N_EVAL, generator=g)
        x = target.sampler.run(ebm.method.energy, x0, 1000, generator=g, callback=lambda i, s,
                               info: accepts.append(float(info.accept_prob.mean())))
        q = quality(d.to_data_space(x), test)
        rows.append((f"x-space EBM, CD-10 + adapted MALA, {ebm.iteration} iterations in "
                     f"{t_ebm:.0f} s; 1000 MALA steps (s = {target.sampler.step_size:.2g}) from "
                     "noise", q, f"{np.mean(accepts):.2f}"))
        scores["x_space_ebm"] = q
    lines = [f"### 1. Low intrinsic dimension: `{data}` ({d.dim}-D, intrinsic 2-D)", "",
             f"GEBM: `configs/gebm_lowdim.toml`, {trainer.iteration} iterations in "
             f"{t_gebm:.0f} s. Latent budgets: {', '.join(map(str, args.grad_budgets))} "
             "gradient evaluations per chain (HMC: steps × 5 leapfrog; IMH: energy "
             "evaluations). 2000 samples against 2000 held-out points.", "",
             "| sampler | MMD² | SW₂ | acceptance |", "| --- | --- | --- | --- |"]
    lines += [f"| {label} | {fmt(q.get('mmd2'))} | {fmt(q.get('sw2'))} | {acc} |"
              for label, q, acc in rows]
    return lines, scores


def fmt_opts(options: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in options.items())


# -- 2. kinetic vs overdamped -------------------------------------------------------------


def part_modes(args: argparse.Namespace, work: Path) -> tuple[list[str], dict[str, Any]]:
    from ebmlab.data.toy2d import EIGHT_RADIUS, EIGHT_SD

    cfg = preset("gebm_toy", f"train.seed={args.seed}")
    trainer, t_train, err = train(cfg, work / "modes_gebm", iterations=args.iterations)
    if err:
        return [f"GEBM training failed: {err}"], {}
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = EIGHT_RADIUS * torch.stack((angles.cos(), angles.sin()), dim=1)
    budget, thin_evals = args.mode_budget, 10
    lines = ["### 2. Kinetic vs overdamped latent samplers: modes visited", "",
             f"GEBM on 8gaussians (`configs/gebm_toy.toml`, {trainer.iteration} iterations, "
             f"{t_train:.0f} s). 200 latent chains from the prior on ½‖z‖² + E(G(z))/T, "
             f"{budget} gradient evaluations each, the decoded state read every {thin_evals} "
             "evaluations and assigned to a mode when within 3 sd (1.06) of its centre. "
             "T < 1 sharpens the posterior's modes (higher barriers).", "",
             "| T | sampler | modes visited per chain (mean) | chains visiting > 1 mode | "
             "pooled occupancy: max abs(share − 1/8) | acceptance |",
             "| --- | --- | --- | --- | --- | --- |"]
    scores: dict[str, Any] = {}
    for temperature in args.temperatures:
        for key, variants in MODE_SAMPLERS.items():
            for name, options, per_step in variants[: 1 if args.quick else None]:
                thin = max(1, thin_evals // per_step)
                steps = budget // per_step
                traj, acc = latent_chains(trainer, name, options, steps, 200, args.seed + 4,
                                          thin=thin, temperature=temperature)
                dist = torch.cdist(traj.double().reshape(-1, 2), centres).reshape(
                    traj.shape[0], traj.shape[1], 8)
                near, mode = dist.min(dim=2)
                mode = torch.where(near < 3 * EIGHT_SD, mode, torch.full_like(mode, -1))
                visited = torch.stack([torch.bincount(mode[:, c][mode[:, c] >= 0], minlength=8)
                                       > 0 for c in range(mode.shape[1])]).sum(dim=1).double()
                counts = torch.bincount(mode[mode >= 0], minlength=8).double()
                dev = float((counts / counts.sum() - 1 / 8).abs().max()) if counts.sum() \
                    else None
                label = f"{key} ({fmt_opts(options)})"
                lines.append(f"| {temperature:g} | {label} | {visited.mean():.2f} | "
                             f"{(visited > 1).double().mean():.2f} | {fmt(dev, 3)} | "
                             f"{'' if acc is None else f'{acc:.2f}'} |")
                scores[f"T={temperature:g}/{label}"] = float(visited.mean())
    return lines, scores


# -- 3. density estimation ----------------------------------------------------------------


def part_density(args: argparse.Namespace, work: Path) -> tuple[list[str], dict[str, Any]]:
    lines = ["### 3. Density estimation with a flow base", "",
             f"Exact KL(p_data ‖ model) in nats by quadrature; {args.iterations} iterations "
             "each (the GEBM steps its base once per 5 energy steps, after 100-step warm-ups "
             "every 500 base steps).", "",
             "| data | flow, maximum likelihood | GEBM (flow base, KALE) | x-space EBM, "
             "persistent ML |", "| --- | --- | --- | --- |"]
    scores: dict[str, Any] = {}
    it = args.iterations
    for data in args.density_data:
        flow_cfg = flow_config(f"data.name={data}", f"train.seed={args.seed}")
        gebm_cfg = preset("gebm_flow_toy", f"data.name={data}", f"train.seed={args.seed}")
        ml_preset = "gmm_convergent" if data == "8gaussians" else "rings_convergent"
        ml_cfg = preset(ml_preset, f"data.name={data}", f"train.seed={args.seed}",
                        f"train.iterations={it}")
        kls = []
        for key, cfg in (("flow", flow_cfg), ("gebm", gebm_cfg), ("persistent", ml_cfg)):
            trainer, secs, err = train(cfg, work / f"density_{data}_{key}", iterations=it)
            if err:
                kls.append(f"failed ({err[:60]})")
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kl = trainer.evaluate()["kl"]
            kls.append(f"{kl:.3f} ({secs:.0f} s)")
            scores[f"{data}/{key}"] = kl
        lines.append(f"| {data} | " + " | ".join(kls) + " |")
    lines += ["", "Train and test NLL (nats per example, data units; test ± its standard "
              f"error) on scikit-learn tabular data, {args.tabular_iterations} iterations of "
              "batch 64 (80/20 split, standardised; the GEBM's log Z by 50k importance "
              "samples from its flow base):", "",
              "| data | n train / test | flow, maximum likelihood: train / test NLL | "
              "GEBM (flow base, KALE): train / test NLL |",
              "| --- | --- | --- | --- |"]
    for name in args.tabular:
        path = work / f"{name}.npy"
        np.save(path, tabular(name))
        row = []
        for key in ("flow", "gebm"):
            make = flow_config if key == "flow" else (
                lambda *o: preset("gebm_flow_toy", *o))
            cfg = make("data.name=npy", f"data.path={path}", "data.test_fraction=0.2",
                       f"train.seed={args.seed}", "train.batch_size=64")
            trainer, secs, err = train(cfg, work / f"tab_{name}_{key}",
                                       iterations=args.tabular_iterations)
            if err:
                row.append(f"failed ({err[:60]})")
                continue
            train_nll, nll, se = nll_and_se(trainer)
            row.append(f"{train_nll:.2f} / {nll:.2f} ± {se:.2f}")
            scores[f"{name}/{key}"] = nll
        d = trainer.data
        lines.append(f"| {name} ({d.dim}-D) | {d.train.shape[0]} / {d.test.shape[0]} | "
                     + " | ".join(row) + " |")
    return lines, scores


def tabular(name: str) -> np.ndarray:
    from sklearn import datasets

    loader = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}[name]
    return loader().data.astype(np.float32)


def nll_and_se(trainer: Trainer) -> tuple[float, float, float]:
    """Train NLL, test NLL (data units) and the test NLL's standard error: exact for the
    flow; for the GEBM with log Z by importance sampling (its se added in quadrature)."""
    energy, data = trainer.energy, trainer.data
    jac = float(data.scale.double().log().sum())
    with torch.no_grad():
        u_test, u_train = energy(data.test).double(), energy(data.train).double()
    if hasattr(energy, "log_partition_is"):
        log_z, log_z_se = energy.log_partition_is(50_000, torch.Generator().manual_seed(0))
    else:
        log_z, log_z_se = float(energy.log_partition()), 0.0
    nll = u_test + log_z + jac
    se = math.sqrt(float(nll.var()) / nll.numel() + log_z_se**2)
    return float(u_train.mean()) + log_z + jac, float(nll.mean()), se


# -- the report ---------------------------------------------------------------------------


def verdicts(lowdim: dict[str, Any], modes: dict[str, Any], density: dict[str, Any],
             budget: int) -> list[str]:
    out = []
    if lowdim:
        base, ula, imh = lowdim["base"], lowdim.get(f"ula@{budget}"), lowdim.get(f"imh@{budget}")
        ebm = lowdim.get("x_space_ebm")

        def beats(a: dict[str, float] | None, b: dict[str, float] | None) -> str:
            if not a or not b:
                return "not measured"
            wins = [a[k] < b[k] for k in ("mmd2", "sw2")]
            return "holds" if all(wins) else ("mixed" if any(wins) else "does not hold")

        out.append(f"- GEBM (latent ULA, {budget} steps) beats its base (MMD² and SW₂): "
                   f"{beats(ula, base)}.")
        out.append(f"- Latent Langevin beats IMH at equal evaluations: {beats(ula, imh)}.")
        out.append(f"- GEBM beats the x-space EBM at equal training time: {beats(ula, ebm)}.")
    for temp in sorted({k.split("/")[0] for k in modes}):
        here = {k.split("/", 1)[1]: v for k, v in modes.items() if k.startswith(temp + "/")}
        ula = max(v for k, v in here.items() if k.startswith("ula"))
        kinetic = max(v for k, v in here.items() if not k.startswith("ula"))
        out.append(f"- {temp}: kinetic samplers visit more modes per chain than ULA: "
                   f"{'holds' if kinetic > ula else 'does not hold'} (best {kinetic:.2f} vs "
                   f"{ula:.2f} modes).")
    for key in [k for k in density if k.endswith("/gebm")]:
        name = key.split("/")[0]
        if f"{name}/flow" in density:
            g, f = density[key], density[f"{name}/flow"]
            out.append(f"- {name}: GEBM {g:.3f} vs flow MLE {f:.3f} (lower is better).")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        low_lines, low = part_lowdim(args, work) if "lowdim" in args.parts else ([], {})
        mode_lines, modes = part_modes(args, work) if "modes" in args.parts else ([], {})
        dens_lines, dens = part_density(args, work) if "density" in args.parts else ([], {})
    minutes = (time.perf_counter() - started) / 60
    command = "python bench/gebm.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    text = "\n".join([
        "# GEBM benchmark", "", f"Command: `{command.strip()}` ({minutes:.1f} min)", "",
        f"- {platform.platform()}, Python {platform.python_version()}, torch "
        f"{torch.__version__}, one thread, seed {args.seed}", "",
        "## Claims", "", *verdicts(low, modes, dens, args.grad_budgets[0]), "",
        "## Tables", "", *low_lines, "", *mode_lines, "", *dens_lines, ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    headline = {"lowdim": {k: v for k, v in low.items()},
                "modes_per_chain": modes, "density": dens, "minutes": round(minutes, 2)}
    print(json.dumps(headline, default=lambda v: None))
    return headline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run, < 10 minutes")
    p.add_argument("--iterations", type=int, default=None,
                   help="training iterations per model (default 4000; 1200 with --quick)")
    p.add_argument("--tabular-iterations", type=int, default=None,
                   help="iterations on tabular data (default 2000; 400 with --quick)")
    p.add_argument("--grad-budgets", type=int, nargs="+", default=None,
                   help="latent gradient evaluations per chain (default 100 1000; 100 quick)")
    p.add_argument("--mode-budget", type=int, default=1000,
                   help="gradient evaluations per chain in part 2 (default 1000)")
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.25],
                   help="latent posterior temperatures of part 2 (default 1 0.25)")
    p.add_argument("--lowdim-data", default="rings_16d")
    p.add_argument("--density-data", nargs="+", default=None,
                   help="2-D toys of part 3 (default 8gaussians rings; 8gaussians quick)")
    p.add_argument("--tabular", nargs="*", default=None,
                   help="wine, breast_cancer (default both; wine quick)")
    p.add_argument("--parts", nargs="+", default=["lowdim", "modes", "density"],
                   choices=["lowdim", "modes", "density"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE.parent / "docs" / "results" / "gebm.md")
    args = p.parse_args(argv)
    q = args.quick
    args.iterations = args.iterations or (1200 if q else 4000)
    args.tabular_iterations = args.tabular_iterations or (400 if q else 2000)
    args.grad_budgets = args.grad_budgets or ([100] if q else [100, 1000])
    args.density_data = args.density_data or (["8gaussians"] if q else ["8gaussians", "rings"])
    args.tabular = (["wine"] if q else ["wine", "breast_cancer"]) if args.tabular is None \
        else args.tabular
    for name in args.tabular:
        if name not in ("wine", "breast_cancer"):
            p.error(f"--tabular: unknown data set {name!r} (wine, breast_cancer)")
    for name in args.density_data:
        if name not in ("8gaussians", "rings"):
            p.error(f"--density-data: {name!r} has no x-space EBM preset (8gaussians, rings)")
    return args


if __name__ == "__main__":
    main()

"""The ``ebmlab`` command.

* ``ebmlab train [--config F.toml] [--set section.key=value ...] [--out DIR]``
  trains (the built-in default with no arguments) and prints the final summary,
  including the exact KL for 2-D data with a known density;
  ``ebmlab train --resume DIR`` continues a run from its last checkpoint.
* ``ebmlab sample``: samples a built-in 2-D target with a chosen sampler
  (``samples.npy``, ``samples.png`` over the exact density, ``traces.png``,
  ``summary.json``); ``ebmlab sample --run DIR`` samples a trained model.
* ``ebmlab eval --run DIR`` prints the run's exact metrics as JSON; for image runs
  FID / KID of ``--quality-samples`` model samples against the test split.
* ``ebmlab plot --run DIR`` redraws the run's figures.
* ``ebmlab inpaint --run DIR --images X.npy --mask M.npy|center|bottom_half|random:P``
  fills the pixels where the mask is 1 from the model's conditional (``completed.npy``,
  ``completed.png``, with ``--score`` PSNR / SSIM in ``scores.json``, ``summary.json``).
* ``ebmlab config [--show] [--config F] [--method NAME] [--set ...]`` prints the resolved
  config, or every key with its default, allowed values and meaning.

Bad input is one line on stderr naming the problem, exit code 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only light modules at the top: torch, numpy and matplotlib are imported by the command
# that needs them, after the arguments are parsed, so `--help` and `--version` are instant
# (tests/test_cli.py checks that `python -m ebmlab --help` imports no torch).
from ebmlab import __version__
from ebmlab.config import ConfigError

if TYPE_CHECKING:
    from ebmlab.energies import AnalyticEnergy
    from ebmlab.run import Run

TARGETS = ("rings", "8gaussians", "25gaussians", "gaussian")

# Defaults per sampler for the built-in targets (unit-scale 2-D densities); its keys are
# the sampler names (tests check they are ebmlab.samplers.SAMPLERS).
SAMPLER_DEFAULTS: dict[str, dict[str, Any]] = {
    "langevin": {"step_size": 0.01},
    "anila": {"step_size": 0.01, "threshold": 10.0},
    "mala": {"step_size": 0.05},
    "hmc": {"step_size": 0.1, "n_leapfrog": 10},
    "underdamped": {"step_size": 0.05, "friction": 1.0},
    "svgd": {"step_size": 0.05},
    "imh": {"scale": 3.0},  # proposal N(0, 3² I) covers the built-in targets
}


UsageError = ConfigError  # a bad command-line value: one line, exit code 2


def make_target(name: str) -> tuple[AnalyticEnergy, tuple[float, float]]:
    from ebmlab.data.toy2d import toy_bounds, toy_target
    from ebmlab.energies import Gaussian

    if name == "gaussian":
        return Gaussian([0.5, -0.5], [[1.0, 0.8], [0.8, 1.0]]), (-5.0, 5.0)
    target = toy_target(name) if name in TARGETS else None
    if target is None:
        raise UsageError(f"--target must be one of {', '.join(TARGETS)}; got {name!r}")
    return target, toy_bounds(name)


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` with value parsed as int, float, bool or left a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--option must look like key=value, got {text!r}")
    low = raw.lower()
    if low in ("true", "false"):
        return key, low == "true"
    for cast in (int, float):
        try:
            return key, cast(raw)
        except ValueError:
            pass
    return key, raw


def user_path(text: str) -> str:
    """A path argument with ``~`` expanded (also where the shell does not: ``--out=~/x``)."""
    return str(Path(text).expanduser())


def fresh_dir(out: str | None, default: str) -> Path:
    """The output folder: an explicit one must be new or empty; the default gets a suffix."""
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UsageError(f"--out {out} already exists and is not empty; refusing to overwrite")
        return path
    path, k = Path(default), 1
    while path.exists():
        path, k = Path(f"{default}-{k}"), k + 1
    return path


def default_run_dir(cfg: Any) -> Path:
    """``runs/DATA-METHOD-SAMPLER``, suffixed if taken."""
    negatives = cfg.samplers.get("negatives", {}).get("name")
    default = "-".join(str(p) for p in ("runs/" + cfg.data.name, cfg.method.name, negatives) if p)
    return fresh_dir(None, default)


def expected_energy(target: AnalyticEnergy, box: tuple) -> float:
    """``E_p[U]`` under the normalised target, by quadrature on the box."""
    from ebmlab.evaluate.exact2d import grid_log_density

    xs, ys, log_p, _ = grid_log_density(target, box, n_grid=400)
    cell = float((xs[1] - xs[0]) * (ys[1] - ys[0]))
    energy = -(log_p + target.log_partition())
    return float((log_p.exp() * energy).sum() * cell)


def cmd_sample(args: argparse.Namespace) -> dict[str, Any]:
    if args.run is not None:
        return sample_run(args)
    import numpy as np
    import torch

    from ebmlab.chains import NoiseInit
    from ebmlab.diagnostics import TraceRecorder
    from ebmlab.evaluate import mmd2
    from ebmlab.plots import plot_density, plot_traces
    from ebmlab.samplers import make_sampler

    if args.sampler not in SAMPLER_DEFAULTS:
        raise UsageError(f"--sampler must be one of {', '.join(sorted(SAMPLER_DEFAULTS))}; "
                         f"got {args.sampler!r}")
    for flag, v in (("--chains", args.chains), ("--steps", args.steps)):
        if v < 1:
            raise UsageError(f"{flag} must be >= 1, got {v}")
    target, (low, high) = make_target(args.target)
    options = dict(SAMPLER_DEFAULTS[args.sampler])
    if args.step_size is not None and args.sampler == "imh":
        raise UsageError("--step-size does not apply to --sampler imh (independent proposals); "
                         "use --option scale=S for the proposal's sd")
    if args.step_size is not None:
        options["step_size"] = args.step_size
    options.update(parse_option(o) for o in args.option)
    try:
        sampler = make_sampler(args.sampler, **options)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    out = fresh_dir(args.out, f"runs/sample-{args.target}-{args.sampler}")

    gen = torch.Generator().manual_seed(args.seed)
    init = NoiseInit((2,), kind="uniform", low=low, high=high, dtype=torch.float64)
    x0 = init.sample(args.chains, generator=gen)
    recorder = TraceRecorder()
    start = time.perf_counter()
    x = sampler.run(target, x0, args.steps, generator=gen, callback=recorder)
    seconds = time.perf_counter() - start

    reference = target.sample(args.chains, generator=gen)
    noise_floor = target.sample(args.chains, generator=gen)
    box = ((low, high), (low, high))
    exact_mean_energy = expected_energy(target, box)
    traces = recorder.as_dict()
    summary: dict[str, Any] = {
        "target": args.target,
        "sampler": repr(sampler),
        "chains": args.chains,
        "steps": args.steps,
        "seed": args.seed,
        "seconds": round(seconds, 3),
        "acceptance": (float(np.mean(traces["accept_prob"])) if "accept_prob" in traces
                       else None),
        "mean_energy": float(target(x).mean()),
        "exact_mean_energy": exact_mean_energy,
        "mmd2_to_exact": mmd2(x, reference),
        "mmd2_exact_vs_exact": mmd2(noise_floor, reference),
        "log_z_exact": target.log_partition(),
        "out": str(out),
    }
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "samples.npy", x.numpy())
    plot_density(target, out / "samples.png", bounds=(low, high), samples=x,
                 title=f"{args.sampler} on {args.target}: {args.chains} chains, "
                       f"{args.steps} steps")
    shown = {k: v for k, v in traces.items() if k in ("energy", "grad_norm", "accept_prob")}
    plot_traces(shown, out / "traces.png", title=f"{args.sampler}: mean over chains per step")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def sample_run(args: argparse.Namespace) -> dict[str, Any]:
    """Samples of a trained run: the method's own (short-run chains from noise, its
    generator, an RBM's Gibbs chains), or ``--steps`` sampler steps from its chain start.
    Writes ``samples.npy``, ``samples.png`` (2-D or images) and ``summary.json``."""
    import numpy as np
    import torch

    from ebmlab.evaluate import mmd2
    from ebmlab.plots import plot_density

    run = load_run_for_cli(args.run)
    if args.chains < 1:
        raise UsageError(f"--chains must be >= 1, got {args.chains}")
    out = fresh_dir(args.out, str(Path(args.run) / "sample"))
    steps = args.steps if args.steps_given else None
    start = time.perf_counter()
    try:
        x, origin = run.draw(args.chains, n_steps=steps, seed=args.seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    seconds = time.perf_counter() - start
    data = run.trainer.data
    summary: dict[str, Any] = {"run": str(run.path), "iteration": run.iteration,
                               "chains": args.chains, "steps": steps, "origin": origin,
                               "seed": args.seed, "seconds": round(seconds, 3)}
    if run.trainer.energy is not None:
        with torch.no_grad():
            summary["mean_energy"] = float(run.energy(x).mean())  # U in data coordinates
    n = min(args.chains, data.test.shape[0], 2000)
    test = data.to_data_space(data.test[:n]).reshape(n, -1)
    summary["mmd2_to_test"] = mmd2(x[:n].reshape(n, -1), test)
    summary["out"] = str(out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "samples.npy", x.cpu().numpy())
    shape = data.image_shape
    if shape is not None:
        from ebmlab.plot_run import shown_samples
        from ebmlab.plots import plot_image_grid

        z = (x - data.shift.to(x)) / data.scale.to(x)  # back to the model's coordinates
        shown, label = shown_samples(run.trainer, z, origin,
                                     torch.Generator(device=z.device).manual_seed(args.seed))
        plot_image_grid(shown.clamp(0, 1).cpu(), out / "samples.png", image_shape=shape,
                        value_range=(0.0, 1.0), title=label)
    elif x.shape[1] == 2 and run.trainer.energy is None:  # a model without a density
        from ebmlab.plots import plot_samples

        plot_samples(x.cpu(), out / "samples.png", bounds=run.trainer.data.bounds, title=origin)
    elif x.shape[1] == 2:
        plot_density(run.energy, out / "samples.png", bounds=data.bounds,
                     samples=x.cpu(), title=origin)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from ebmlab import distributed
    from ebmlab.config import load_config
    from ebmlab.experiment import RunConfig
    from ebmlab.run import load_run_config
    from ebmlab.train import resume_run, start_run

    if args.resume is not None:
        if args.config is not None or args.out is not None:
            raise UsageError("--resume takes the run's own config and folder; "
                             "drop --config / --out (use --set to change values)")
        folder = Path(args.resume)
        if not folder.is_dir():
            raise UsageError(f"--resume {folder}: no such run directory")
        cfg = load_run_config(folder, args.set)
        dist = distributed.setup(cfg.train.device)
        trainer = resume_run(cfg, folder, command=args.argv, dist=dist)
    else:
        cfg = load_config(RunConfig, path=args.config, overrides=args.set)
        dist = distributed.setup(cfg.train.device)
        # several processes: rank 0 picks the folder, the others use it
        out = Path(args.out) if args.out is not None else \
            distributed.broadcast_object(dist, default_run_dir(cfg))
        trainer = start_run(cfg, out, command=args.argv, dist=dist)
    if dist.is_main:
        procs = f", {dist.world_size} processes" if dist.enabled else ""
        print(f"ebmlab train: run directory {trainer.out} (iteration {trainer.iteration} of "
              f"{trainer.cfg.train.iterations}{procs})", file=sys.stderr)
    summary = trainer.fit()
    if not dist.is_main:
        return {}
    summary["out"] = str(trainer.out)
    if "kl" in summary:
        print(f"exact KL(p_data || p_model) = {summary['kl']:.4f} nats", file=sys.stderr)
    return summary


def cmd_config(args: argparse.Namespace) -> str:
    """The resolved config (``--config`` + ``--set``, method ``--method``) as the TOML a run
    would save, or with ``--show`` every key with its meaning, type, range and default."""
    from ebmlab.config import dump_toml, load_config
    from ebmlab.experiment import RunConfig, describe_config

    overrides = [*args.set, *([f"method.name={args.method}"] if args.method else [])]
    cfg = load_config(RunConfig, path=args.config, overrides=overrides)
    return describe_config(cfg) if args.show else dump_toml(cfg)


def load_run_for_cli(path: str) -> Run:
    """The run in ``path``, with the process using the run's ``train.threads``."""
    from ebmlab.run import Run
    from ebmlab.threads import set_threads

    run = Run(path)
    if run.config.train.threads:  # a command is its own process: set it for all of it
        set_threads(run.config.train.threads)
    return run


def cmd_eval(args: argparse.Namespace) -> dict[str, Any]:
    n = getattr(args, "quality_samples", None)
    if n is not None and n < 0:
        raise UsageError(f"--quality-samples must be >= 0, got {n}")
    run = load_run_for_cli(args.run)
    return {"run": str(run.path), **run.trainer.evaluate(n)}


def cmd_plot(args: argparse.Namespace) -> dict[str, Any]:
    from ebmlab.plot_run import plot_run

    run = load_run_for_cli(args.run)
    written = plot_run(run.path, run.trainer)
    return {"run": str(run.path), "plots": [str(p) for p in written]}


def cmd_inpaint(args: argparse.Namespace) -> dict[str, Any]:
    """Complete images with a trained run: sample the missing pixels (mask 1) from the
    model's conditional, the observed ones kept exactly (``ebmlab.inpaint``)."""
    import numpy as np
    import torch

    from ebmlab import inpaint as ip
    from ebmlab.run import Run

    if args.samples < 1:
        raise UsageError(f"--samples must be >= 1, got {args.samples}")
    if args.steps is not None and args.steps < 0:
        raise UsageError(f"--steps must be >= 0, got {args.steps}")
    run = Run(args.run)
    data = run.trainer.data
    shape, is_image = data.shape, data.image_shape is not None
    try:
        raw, x = ip.read_images(args.images, shape)
        if ip.is_mask_name(args.mask):
            mask = ip.named_mask(args.mask, shape, len(x), seed=args.seed, image=is_image).numpy()
        elif not Path(args.mask).is_file():
            raise ValueError(f"--mask {args.mask}: file not found (masks by name: "
                             f"{', '.join(ip.MASK_NAMES)})")
        else:
            mask = ip.read_mask(args.mask, raw, shape)
        ip.check_masks(mask)
    except ValueError as e:
        raise UsageError(str(e)) from None
    target = run.method.target()
    steps = args.steps if args.steps is not None else (target.n_steps if target else None)
    out = fresh_dir(args.out, str(Path(args.run) / "inpaint"))

    start = time.perf_counter()
    try:
        filled = ip.complete_images(run.method, data, torch.from_numpy(x), torch.from_numpy(mask),
                                    samples=args.samples, n_steps=args.steps, seed=args.seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    seconds = time.perf_counter() - start
    dtype = raw.dtype if raw.dtype.kind == "f" else np.dtype(np.float32)
    mask_raw = mask.reshape(raw.shape)
    completed = np.where(mask_raw, filled.cpu().numpy().reshape(raw.shape).astype(dtype),
                         raw.astype(dtype))
    train = data.to_data_space(data.train).cpu()
    lo, hi, data_range = float(train.min()), float(train.max()), ip.data_range(train)
    summary: dict[str, Any] = {
        "run": str(run.path), "iteration": run.iteration, "images": str(args.images),
        "n_images": int(len(x)), "mask": str(args.mask),
        "missing_fraction": float(mask.mean()), "samples": args.samples, "steps": steps,
        "sampler": getattr(getattr(target, "sampler", None), "name", None), "seed": args.seed,
        "seconds": round(seconds, 3), "out": str(out)}
    scores = None
    if args.score:
        truth = torch.from_numpy(x)
        pred = torch.from_numpy(completed.reshape(x.shape).astype(np.float64))
        scores = {"data_range": data_range,
                  **ip.score(pred, truth, torch.from_numpy(mask), data_range)}
        summary.update(scores)

    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "completed.npy", completed)
    if is_image:
        from ebmlab.plots import plot_image_grid

        n = min(len(x), 16)
        orig = torch.from_numpy(x[:n]).float()
        hidden = torch.from_numpy(mask[:n])
        masked = torch.where(hidden, torch.full_like(orig, (lo + hi) / 2), orig)
        done = torch.from_numpy(completed.reshape(x.shape)[:n]).float()
        plot_image_grid(torch.cat([masked, done, orig]), out / "completed.png", nrow=n,
                        value_range=(lo, hi), title=f"masked input (missing grey) / completion "
                        f"({args.samples}× {steps} {summary['sampler']} steps) / original")
    if scores is not None:
        (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ebmlab", description="Energy-based models with MCMC and amortized samplers."
    )
    parser.add_argument("--version", action="version", version=f"ebmlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train an EBM (the built-in default with no arguments)",
                       description="Train an energy-based model from a TOML config.")
    t.add_argument("--config", default=None, type=user_path,
                   help="TOML file with [data] [model] [method] [samplers.ROLE] [optim.GROUP] "
                   "[train] sections (see configs/, and ebmlab config --show)")
    t.add_argument("--set", action="extend", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                   help="override config values, e.g. --set train.iterations=500 train.lr=2e-3 "
                   "(repeatable; several key=value may follow one --set)")
    t.add_argument("--out", default=None, type=user_path,
                   help="new run directory (default runs/DATA-METHOD-SAMPLER, suffixed if taken)")
    t.add_argument("--resume", default=None, metavar="DIR", type=user_path,
                   help="continue the run in DIR from its last checkpoint")
    t.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="train with N processes (torch.distributed: gloo on CPU, NCCL on CUDA);"
                   " the same as torchrun --standalone --nproc_per_node=N -m ebmlab train ...")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("config", help="show every config key with its default, range and "
                       "meaning (--show), or the resolved config a run would save",
                       description="Print the resolved config (TOML, as a run saves it), or "
                       "with --show every key of the method with its meaning, type, allowed "
                       "values and default. The output is valid TOML for --config.")
    c.add_argument("--show", action="store_true",
                   help="every key, with its help text, type, allowed values and default")
    c.add_argument("--config", default=None, type=user_path, help="start from this TOML file")
    c.add_argument("--method", default=None, metavar="NAME",
                   help="the method whose options to list (default: the config's, cd)")
    c.add_argument("--set", action="extend", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                   help="override config values, as for train")
    c.set_defaults(func=cmd_config)

    for name, func, text in (("eval", cmd_eval, "print a run's exact metrics as JSON (image "
                              "runs: FID / KID of model samples against the test split)"),
                             ("plot", cmd_plot, "redraw a run's figures")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--run", required=True, metavar="DIR", type=user_path,
                       help="run directory")
        if name == "eval":
            p.add_argument("--quality-samples", type=int, default=None, metavar="N",
                           help="image runs: model samples scored by FID / KID (default: "
                           "the run's train.quality_samples; 0: skip)")
        p.set_defaults(func=func)

    s = sub.add_parser("sample", help="sample a built-in 2-D target, or a trained run (--run)",
                       description="Sample a built-in 2-D target with exact density, or a "
                                   "trained run with its own sampler.")
    s.add_argument("--run", default=None, metavar="DIR", type=user_path,
                   help="sample this trained run instead of a built-in target")
    s.add_argument("--target", default="rings", help=f"one of {', '.join(TARGETS)}")
    s.add_argument("--sampler", default="mala",
                   help=f"one of {', '.join(sorted(SAMPLER_DEFAULTS))}")
    s.add_argument("--steps", type=int, default=None,
                   help="sampler steps (default 1000); with --run: run the run's sampler this "
                   "many steps from its chain start instead of the method's own samples")
    s.add_argument("--chains", type=int, default=2000)
    s.add_argument("--step-size", type=float, default=None,
                   help="sampler step size (default: per sampler, see SAMPLER_DEFAULTS)")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra sampler option, e.g. --option n_leapfrog=5 (repeatable)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=None, type=user_path,
                   help="output folder (must be new or empty; default runs/sample-TARGET-SAMPLER)")
    s.set_defaults(func=cmd_sample)

    i = sub.add_parser("inpaint", help="complete images with a trained run (fill mask == 1)",
                       description="Fill the pixels where the mask is 1 by sampling the "
                                   "model's conditional; observed pixels stay exactly as given.")
    i.add_argument("--run", required=True, metavar="DIR", help="run directory")
    i.add_argument("--images", required=True, metavar="X.npy",
                   help="images in the run's data units: (N, H, W), (N, C, H, W) or (N, D)")
    i.add_argument("--mask", required=True, metavar="M.npy|NAME",
                   help="1 = missing: a .npy of one image's shape or of X's shape, or center, "
                        "bottom_half, random:P (a fraction P of each image's pixels, seeded)")
    i.add_argument("--out", default=None, help="output folder (must be new or empty; default "
                   "RUN/inpaint, suffixed if taken)")
    i.add_argument("--samples", type=int, default=1, help="average this many completions")
    i.add_argument("--steps", type=int, default=None,
                   help="sampler steps (default: the method's own number)")
    i.add_argument("--score", action="store_true",
                   help="write scores.json: PSNR / SSIM on the missing pixels and whole images, "
                        "X as ground truth")
    i.add_argument("--seed", type=int, default=0, help="seed of the chains and of random:P")
    i.set_defaults(func=cmd_inpaint)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr (no source path or code line)."""
    print(f"ebmlab: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    warnings.showwarning = _one_line_warning
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = ["ebmlab", *argv]  # recorded by a run
    # Imported after parsing: both bring in torch.
    from ebmlab.samplers import NonFiniteError
    from ebmlab.train import TrainingError

    # With several training processes only rank 0 speaks (errors are shared, see
    # ebmlab.distributed); the launcher of --nproc prints nothing of its own.
    quiet = int(os.environ.get("RANK", "0")) != 0
    if args.command == "train" and args.nproc is not None:
        return _launch_train(args, argv)
    if args.command == "sample":
        args.steps_given = args.steps is not None
        args.steps = 1000 if args.steps is None else args.steps
    try:
        summary = args.func(args)
    except UsageError as e:
        if not quiet:
            print(f"ebmlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteError, TrainingError) as e:
        if not quiet:
            print(f"ebmlab {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ebmlab {args.command}: interrupted; checkpoints written so far are kept",
              file=sys.stderr)
        return 130
    if quiet:
        return 0
    if isinstance(summary, str):
        print(summary)
        return 0
    print(json.dumps({k: (round(v, 5) if isinstance(v, float) and math.isfinite(v) else v)
                      for k, v in summary.items()}))
    return 0


def _launch_train(args: argparse.Namespace, argv: list[str]) -> int:
    """``ebmlab train --nproc N``: check the config once here, fix the run folder, then
    start N training processes (:func:`ebmlab.distributed.launch`)."""
    from ebmlab import distributed
    from ebmlab.config import load_config
    from ebmlab.experiment import RunConfig
    from ebmlab.run import load_run_config

    rest = list(argv)
    i = rest.index("--nproc") if "--nproc" in rest else None
    if i is not None:
        del rest[i:i + 2]
    else:
        rest = [a for a in rest if not a.startswith("--nproc=")]
    rest = rest[rest.index("train") + 1:]
    try:
        if args.nproc < 1:
            raise UsageError(f"--nproc must be >= 1, got {args.nproc}")
        if distributed.launched_by_torchrun():
            raise UsageError("--nproc starts the processes itself; under torchrun leave it out")
        if args.resume is not None:
            if not Path(args.resume).is_dir():
                raise UsageError(f"--resume {args.resume}: no such run directory")
            load_run_config(Path(args.resume), args.set)
        else:
            cfg = load_config(RunConfig, path=args.config, overrides=args.set)
            if args.out is None:
                rest += ["--out", str(default_run_dir(cfg))]
    except UsageError as e:
        print(f"ebmlab train: error: {e}", file=sys.stderr)
        return 2
    if args.nproc == 1:
        return main(["train", *rest])
    return distributed.launch(args.nproc, ["-m", "ebmlab", "train", *rest])


if __name__ == "__main__":
    raise SystemExit(main())

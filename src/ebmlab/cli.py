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

Bad input is one line on stderr naming the problem, exit code 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ebmlab.chains import NoiseInit
from ebmlab.config import ConfigError, load_config
from ebmlab.data.toy2d import toy_bounds, toy_target
from ebmlab.diagnostics import TraceRecorder
from ebmlab.energies import AnalyticEnergy, Gaussian
from ebmlab.evaluate import mmd2
from ebmlab.evaluate.exact2d import grid_log_density
from ebmlab.plots import plot_density, plot_traces
from ebmlab.samplers import SAMPLERS, NonFiniteError, make_sampler
from ebmlab.train import TrainingError

TARGETS = ("rings", "8gaussians", "25gaussians", "gaussian")

# Defaults per sampler for the built-in targets (unit-scale 2-D densities).
SAMPLER_DEFAULTS: dict[str, dict[str, Any]] = {
    "langevin": {"step_size": 0.01},
    "anila": {"step_size": 0.01, "threshold": 10.0},
    "mala": {"step_size": 0.05},
    "hmc": {"step_size": 0.1, "n_leapfrog": 10},
    "underdamped": {"step_size": 0.05, "friction": 1.0},
    "svgd": {"step_size": 0.05},
}


UsageError = ConfigError  # a bad command-line value: one line, exit code 2


def make_target(name: str) -> tuple[AnalyticEnergy, tuple[float, float]]:
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


def expected_energy(target: AnalyticEnergy, box: tuple) -> float:
    """``E_p[U]`` under the normalised target, by quadrature on the box."""
    xs, ys, log_p, _ = grid_log_density(target, box, n_grid=400)
    cell = float((xs[1] - xs[0]) * (ys[1] - ys[0]))
    energy = -(log_p + target.log_partition())
    return float((log_p.exp() * energy).sum() * cell)


def cmd_sample(args: argparse.Namespace) -> dict[str, Any]:
    if args.run is not None:
        return sample_run(args)
    if args.sampler not in SAMPLERS:
        raise UsageError(f"--sampler must be one of {', '.join(sorted(SAMPLERS))}; "
                         f"got {args.sampler!r}")
    for flag, v in (("--chains", args.chains), ("--steps", args.steps)):
        if v < 1:
            raise UsageError(f"{flag} must be >= 1, got {v}")
    target, (low, high) = make_target(args.target)
    options = dict(SAMPLER_DEFAULTS[args.sampler])
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
    generator, an RBM's Gibbs chains), or ``--steps`` sampler steps from its chain start."""
    from ebmlab.run import Run

    run = Run(args.run)
    if args.chains < 1:
        raise UsageError(f"--chains must be >= 1, got {args.chains}")
    out = fresh_dir(args.out, str(Path(args.run) / "sample"))
    steps = args.steps if args.steps_given else None
    try:
        x, origin = run.draw(args.chains, n_steps=steps, seed=args.seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "samples.npy", x.cpu().numpy())
    summary: dict[str, Any] = {"run": str(run.path), "iteration": run.iteration,
                               "chains": args.chains, "steps": steps, "origin": origin,
                               "out": str(out)}
    shape = run.trainer.data.image_shape
    if shape is not None:
        from ebmlab.plots import plot_image_grid

        plot_image_grid(x.clamp(0, 1).cpu(), out / "samples.png", image_shape=shape,
                        value_range=(0.0, 1.0), title=origin)
    elif x.shape[1] == 2:
        plot_density(run.energy, out / "samples.png", bounds=run.trainer.data.bounds,
                     samples=x.cpu(), title=origin)
    return summary


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
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
        trainer = resume_run(load_run_config(folder, args.set), folder)
    else:
        cfg = load_config(RunConfig, path=args.config, overrides=args.set)
        negatives = cfg.samplers.get("negatives", {}).get("name")
        default = "-".join(str(p) for p in ("runs/" + cfg.data.name, cfg.method.name, negatives)
                           if p)
        out = Path(args.out) if args.out is not None else fresh_dir(None, default)
        trainer = start_run(cfg, out)
    print(f"ebmlab train: run directory {trainer.out} (iteration {trainer.iteration} of "
          f"{trainer.cfg.train.iterations})", file=sys.stderr)
    summary = trainer.fit()
    summary["out"] = str(trainer.out)
    if "kl" in summary:
        print(f"exact KL(p_data || p_model) = {summary['kl']:.4f} nats", file=sys.stderr)
    return summary


def cmd_eval(args: argparse.Namespace) -> dict[str, Any]:
    from ebmlab.run import Run

    n = getattr(args, "quality_samples", None)
    if n is not None and n < 0:
        raise UsageError(f"--quality-samples must be >= 0, got {n}")
    run = Run(args.run)
    return {"run": str(run.path), **run.trainer.evaluate(n)}


def cmd_plot(args: argparse.Namespace) -> dict[str, Any]:
    from ebmlab.plot_run import plot_run
    from ebmlab.run import Run

    run = Run(args.run)
    written = plot_run(run.path, run.trainer)
    return {"run": str(run.path), "plots": [str(p) for p in written]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ebmlab", description="Energy-based models with MCMC and amortized samplers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train an EBM (the built-in default with no arguments)",
                       description="Train an energy-based model from a TOML config.")
    t.add_argument("--config", default=None, help="TOML file with [data] [model] [sampler] "
                   "[method] [train] sections (see configs/)")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable), e.g. --set train.iterations=500")
    t.add_argument("--out", default=None, help="new run directory (default runs/DATA-METHOD-"
                   "SAMPLER, suffixed if taken)")
    t.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR from its last checkpoint")
    t.set_defaults(func=cmd_train)

    for name, func, text in (("eval", cmd_eval, "print a run's exact metrics as JSON (image "
                              "runs: FID / KID of model samples against the test split)"),
                             ("plot", cmd_plot, "redraw a run's figures")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--run", required=True, metavar="DIR", help="run directory")
        if name == "eval":
            p.add_argument("--quality-samples", type=int, default=None, metavar="N",
                           help="image runs: model samples scored by FID / KID (default: "
                           "the run's train.quality_samples; 0: skip)")
        p.set_defaults(func=func)

    s = sub.add_parser("sample", help="sample a built-in 2-D target, or a trained run (--run)",
                       description="Sample a built-in 2-D target with exact density, or a "
                                   "trained run with its own sampler.")
    s.add_argument("--run", default=None, metavar="DIR",
                   help="sample this trained run instead of a built-in target")
    s.add_argument("--target", default="rings", help=f"one of {', '.join(TARGETS)}")
    s.add_argument("--sampler", default="mala", help=f"one of {', '.join(sorted(SAMPLERS))}")
    s.add_argument("--steps", type=int, default=None,
                   help="sampler steps (default 1000); with --run: run the run's sampler this "
                   "many steps from its chain start instead of the method's own samples")
    s.add_argument("--chains", type=int, default=2000)
    s.add_argument("--step-size", type=float, default=None,
                   help="sampler step size (default: per sampler, see SAMPLER_DEFAULTS)")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra sampler option, e.g. --option n_leapfrog=5 (repeatable)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=None,
                   help="output folder (must be new or empty; default runs/sample-TARGET-SAMPLER)")
    s.set_defaults(func=cmd_sample)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr (no source path or code line)."""
    print(f"ebmlab: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    warnings.showwarning = _one_line_warning
    args = build_parser().parse_args(argv)
    if args.command == "sample":
        args.steps_given = args.steps is not None
        args.steps = 1000 if args.steps is None else args.steps
    try:
        summary = args.func(args)
    except UsageError as e:
        print(f"ebmlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteError, TrainingError) as e:
        print(f"ebmlab {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ebmlab {args.command}: interrupted; checkpoints written so far are kept",
              file=sys.stderr)
        return 130
    print(json.dumps({k: (round(v, 5) if isinstance(v, float) and math.isfinite(v) else v)
                      for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

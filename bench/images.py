"""Image quality of ConvNet EBMs on the 8×8 digits: FID and KID in ebmlab's own feature space.

Every contender is scored by the same network — the small classifier
:mod:`ebmlab.evaluate.image_quality` trains on the digits' training split and caches —
against the 297 test images, with as many samples as test images (FID's bias depends on
the sample count, so all rows use the same count):

* **floor**: 297 training images (test vs train: no model of the same law can do better
  than what is left here, the estimators' finite-sample bias and the train/test gap);
* **GaussianMixture** (scikit-learn, EM on the 64 pixels) with 10 full-covariance
  components (the best held-out likelihood of 1, 10, 20, 40 components in a sweep) and
  with 50 diagonal ones;
* **short-run ML from noise** (``configs/digits_conv_shortrun.toml``, non-convergent:
  the K-step sampler is the generator) and **persistent ML**
  (``configs/digits_conv_persistent.toml``, convergent: its long-run chains are the
  model), each scored on its short-run samples (K steps from noise), on long-run chains
  from noise and on long-run chains from held-out test images (``longrun_factor`` × K
  steps), the Anatomy paper's contrast;
* **AniLA vs Langevin at equal budget**: the short-run preset with AniLA instead of
  Langevin (same K, step, iterations, seed), at the preset's tuned step and at a step
  ``--big-step`` times larger, too large for Langevin; AniLA's threshold is ``b = 0.1 / s``
  (a pixel moves at most 0.1 per step, see ``ANILA_CAP``).

    python bench/images.py --quick     # fewer iterations (< 10 min on a quiet 2-core machine)
    python bench/images.py             # the presets' full lengths

Writes ``docs/results/images.md`` and the sample grids into ``docs/results/images/``
(``--out``; with ``--quick`` ``images_quick.md`` and ``images_quick/``), the runs into
``bench/out/images/`` (``--runs``; ``bench/out/images_quick/``); prints the report; the
last stdout line is one JSON object ``{"<row>:<samples>": {"fid": ..., "kid": ...}}``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import platform
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ebmlab.config import dump_toml, load_config
from ebmlab.data import load_digits
from ebmlab.evaluate.image_baselines import gaussian_mixture_samples, training_images
from ebmlab.evaluate.image_quality import feature_space, score_images
from ebmlab.experiment import RunConfig
from ebmlab.plots import plot_image_grid
from ebmlab.run import load_run_config
from ebmlab.train import CONFIG_FILE, SUMMARY_FILE, start_run

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent / "configs"
SHORTRUN = CONFIGS / "digits_conv_shortrun.toml"
PERSISTENT = CONFIGS / "digits_conv_persistent.toml"
# AniLA's b in γ = b / max(b, |∂U|) (per pixel, standardised units): the drift of a pixel is
# at most s·b per step. b is set by that cap, b = ANILA_CAP / s, so the cap is the same at
# every step size: 0.1 lets a chain cross the data range (≈ 3 units) in K = 30 steps. A
# fixed b cannot serve both steps: b = 5 at s = 0.01 caps chains at 1.5 units in 30 steps
# and learning stalls (d_st stuck below 0, measured); b = 5 or 10 at s = 0.1 leaves
# steps of 0.5–1 per pixel and learning diverges (measured, 200–300 iterations).
ANILA_CAP = 0.1


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    preset: Path
    overrides: tuple[str, ...] = ()


def contenders(big_step: float) -> list[Contender]:
    base = load_config(RunConfig, path=SHORTRUN)
    step = float(base.samplers["negatives"]["step_size"])
    big = step * big_step

    def anila(s: float) -> tuple[str, ...]:
        return ("sampler.name=anila", f"sampler.threshold={ANILA_CAP / s:g}",
                f"sampler.step_size={s:g}")

    return [
        Contender("shortrun", f"short-run ML from noise, Langevin s = {step:g}", SHORTRUN),
        Contender("persistent", "persistent ML (replay buffer), Langevin", PERSISTENT),
        Contender("anila", f"short-run ML from noise, AniLA s = {step:g}, "
                  f"b = {ANILA_CAP / step:g}", SHORTRUN, anila(step)),
        # the two big-step rows checkpoint every 100 iterations, so that a divergence
        # early in training can be rolled back (the preset's 500 would stop the run)
        Contender("langevin_big", f"short-run ML from noise, Langevin s = {big:g} (too large)",
                  SHORTRUN, (f"sampler.step_size={big:g}", "train.ckpt_every=100")),
        Contender("anila_big", f"short-run ML from noise, AniLA s = {big:g}, "
                  f"b = {ANILA_CAP / big:g}", SHORTRUN, (*anila(big), "train.ckpt_every=100")),
    ]


@dataclass
class Row:
    key: str
    label: str
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # by sample kind
    seconds: float | None = None  # training loop, wall clock
    cpu_seconds: float | None = None  # the whole run (training, evaluation, plots), CPU time
    settings: str = ""
    error: str | None = None
    note: str = ""
    reused: bool = False


def score(space: Any, samples: torch.Tensor, test: torch.Tensor) -> dict[str, Any]:
    s = score_images(space, samples, test)
    return {k: s[k] for k in ("fid", "kid", "kid_sd", "n_samples")}


def run_ebm(c: Contender, args: argparse.Namespace) -> Row:
    """Train the contender through ``ebmlab.train`` (the CLI's loop) and score its short-run
    samples and its long-run chains from noise and from test images."""
    row = Row(c.key, c.label, settings=" ".join(c.overrides))
    n = load_digits("test").images.shape[0]
    overrides = [*c.overrides, f"train.seed={args.seed}", "train.progress=false",
                 f"train.threads={args.threads}", f"train.quality_samples={n}",
                 "train.quality_checkpoints=true"]
    if args.longrun_factor:
        overrides.append(f"train.longrun_factor={args.longrun_factor}")
    if args.iterations:
        overrides += [f"train.iterations={args.iterations}",
                      f"train.ckpt_every={max(1, args.iterations // 4)}",
                      f"train.plot_every={max(1, args.iterations // 2)}"]
    cfg = load_config(RunConfig, path=c.preset, overrides=overrides)
    out = args.runs / c.key
    record = out / "bench_row.json"  # this script's own note: CPU time, error
    if args.reuse and record.exists() and (out / CONFIG_FILE).exists() \
            and dump_toml(load_run_config(out, [])) == dump_toml(cfg):  # header aside
        row.reused = True  # the same config trains bit-identically on CPU: keep the run
        saved = json.loads(record.read_text())
        row.cpu_seconds, row.error = saved["cpu_seconds"], saved["error"]
    else:
        if out.exists():
            shutil.rmtree(out)
        cpu = time.process_time()
        torch.set_num_threads(args.threads)
        try:
            start_run(cfg, out).fit()
        except Exception as e:  # noqa: BLE001 - a failed contender is a result, keep the rest
            row.error = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        row.cpu_seconds = time.process_time() - cpu
        if out.exists():
            record.write_text(json.dumps({"cpu_seconds": row.cpu_seconds, "error": row.error}))
    summary = json.loads((out / SUMMARY_FILE).read_text()) \
        if (out / SUMMARY_FILE).exists() else {}
    if not summary:
        return row
    row.seconds = summary.get("seconds")
    if "fid" in summary:
        row.scores["short"] = {"fid": summary["fid"], "kid": summary["kid"],
                               "kid_sd": summary["kid_sd"],
                               "n_samples": summary["quality_samples"],
                               "origin": summary["quality_origin"]}
    longrun = summary.get("longrun", {})
    for origin, kind in (("model", "long_noise"), ("data", "long_data")):
        entry = longrun.get(origin, {})
        if "fid" in entry:
            row.scores[kind] = {"fid": entry["fid"], "kid": entry["kid"],
                                "kid_sd": entry["kid_sd"], "n_samples": longrun.get("n"),
                                "origin": entry.get("start", "")}
        elif "error" in entry:
            row.scores[kind] = {"error": entry["error"]}
    row.note = f"{summary.get('rollbacks', 0)} rollback(s)" if summary.get("rollbacks") else ""
    for name, target in (("samples.png", f"{c.key}_shortrun.png"),
                         ("longrun_model.png", f"{c.key}_longrun_noise.png"),
                         ("longrun_data.png", f"{c.key}_longrun_data.png"),
                         ("diagnosis.png", f"{c.key}_diagnosis.png"),
                         ("quality.png", f"{c.key}_quality.png")):
        if (out / name).exists():
            shutil.copyfile(out / name, args.out / args.name / target)
    return row


def baseline_rows(args: argparse.Namespace, space: Any, train: torch.Tensor,
                  test: torch.Tensor) -> list[Row]:
    n = test.shape[0]
    rows = [Row("floor", f"training images ({n} of {train.shape[0]}): the floor")]
    x = training_images(train, n, seed=args.seed)
    rows[0].scores["short"] = score(space, x, test)
    for k, cov in args.gmm:
        row = Row(f"gmm_{k}_{cov}", f"GaussianMixture, {k} {cov}-covariance components")
        started = time.perf_counter()
        x = gaussian_mixture_samples(train, n, n_components=k, covariance_type=cov,
                                     seed=args.seed)
        row.seconds = time.perf_counter() - started
        row.scores["short"] = score(space, x, test)
        row.settings = "sklearn GaussianMixture, reg_covar=1e-3, pixels in [0, 1]"
        plot_image_grid(x[:64].clamp(0, 1), args.out / args.name / f"{row.key}.png",
                        image_shape=(1, 8, 8), value_range=(0.0, 1.0), title=row.label)
        rows.append(row)
    return rows


def fmt(d: dict[str, Any] | None) -> tuple[str, str]:
    if not d:
        return "", ""
    if "error" in d:
        return "failed", d["error"][:60]
    return f"{d['fid']:.3f}", f"{d['kid']:.4f} ± {d['kid_sd']:.4f}"


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def report(args: argparse.Namespace, rows: list[Row], space: Any, elapsed: float) -> str:
    command = "python bench/images.py " + " ".join(shlex.quote(a) for a in args.argv)
    acc = f"{100 * space.test_accuracy:.1f} %" if space.test_accuracy is not None else "?"
    lines = [
        "# ConvNet EBMs on the 8×8 digits: FID / KID in ebmlab's own feature space",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"- {platform.platform()}, Python {platform.python_version()}, torch "
        f"{torch.__version__}, scikit-learn {version('scikit-learn')}, ebmlab "
        f"{version('ebmlab')}; {args.threads} thread(s) per run, {args.jobs} run(s) at once; "
        f"{time.strftime('%Y-%m-%d %H:%M')}; wall time {elapsed:.0f} s",
        f"- seed {args.seed} (training, sampling and the GaussianMixture); iterations: "
        f"{args.iterations or 'the presets'}'",
        f"- feature network: `{space.key}` (ebmlab's classifier, test accuracy {acc} on the "
        "297 test digits); FID / KID of samples clamped to [0, 1] against the 297 test "
        "images, with 297 samples per row (KID: mean ± sd over 100 subsets)",
        "",
        "| model | samples | FID | KID | training s (wall) | CPU s | settings |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    kinds = (("short", "short-run from noise"), ("long_noise", "long-run from noise"),
             ("long_data", "long-run from test images"))
    for row in rows:
        if row.error and not row.scores:
            lines.append(f"| {row.label} | failed: {row.error} | | | | | `{row.settings}` |")
            continue
        first = True
        for kind, name in kinds:
            if kind not in row.scores:
                continue
            d = row.scores[kind]
            what = d.get("origin") or ("samples" if row.key.startswith(("floor", "gmm"))
                                       else name)
            if row.key == "floor":
                what = "training images"
            f, k = fmt(d)
            secs = f"{row.seconds:.0f}" if first and row.seconds is not None else ""
            cpu = f"{row.cpu_seconds:.0f}" if first and row.cpu_seconds is not None else ""
            label = row.label if first else ""
            notes = [row.note] if row.note else []
            if row.reused:
                notes.append("run reused from an earlier invocation")
            note = f" ({'; '.join(notes)})" if first and notes else ""
            err = f" ({row.error})" if first and row.error else ""
            settings = f"`{row.settings}`" if first and row.settings else ""
            lines.append(f"| {label}{note}{err} | {what} | {f} | {k} | {secs} | {cpu} | "
                         f"{settings} |")
            first = False
    lines += [
        "",
        "Lower is better for both; the floor row is what real data of the same law scores. "
        f"Grids in `{args.name}/`: `<row>_shortrun.png` (the method's own samples), "
        "`<row>_longrun_noise.png` and `<row>_longrun_data.png` (long-run chains), "
        "`<row>_diagnosis.png` (d_st and r_t, Anatomy), `<row>_quality.png` (FID / KID over "
        "training), `gmm_*.png`.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="300 iterations per EBM instead of the presets' lengths")
    p.add_argument("--iterations", type=int, default=None,
                   help="iterations per EBM (default: the presets'; 300 with --quick)")
    p.add_argument("--longrun-factor", type=int, default=None,
                   help="long-run chains run this many times K steps (default: the presets')")
    p.add_argument("--big-step", type=float, default=10.0,
                   help="the too-large step, as a multiple of the preset's (default 10)")
    p.add_argument("--only", default=None,
                   help="comma-separated EBM rows to run (shortrun, persistent, anila, "
                   "langevin_big, anila_big); default all")
    p.add_argument("--gmm", default="10:full,50:diag",
                   help="GaussianMixture rows as components:covariance_type, comma-separated")
    p.add_argument("--reuse", action="store_true",
                   help="keep an EBM run of --runs whose config equals this invocation's "
                   "(training is bit-identical on CPU) instead of training it again")
    p.add_argument("--jobs", type=int, default=1,
                   help="EBM rows trained at once in separate processes (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE.parent / "docs" / "results",
                   help="report images.md and grids images/ (with --quick: images_quick.md, "
                   "images_quick/; default docs/results/)")
    p.add_argument("--runs", type=Path, default=None,
                   help="the EBM run directories (default bench/out/images/, with --quick "
                   "bench/out/images_quick/)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick and args.iterations is None:
        args.iterations = 300
    args.name = "images_quick" if args.quick else "images"
    args.runs = args.runs or HERE / "out" / args.name
    try:
        args.gmm = [(int(k), cov) for k, cov in (item.split(":") for item in
                                                  args.gmm.split(",") if item)]
    except ValueError:
        p.error(f"--gmm must look like 10:full,50:diag; got {args.gmm!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    (args.out / args.name).mkdir(parents=True, exist_ok=True)
    args.runs.mkdir(parents=True, exist_ok=True)
    space = feature_space("digits", log=lambda s: print(s, file=sys.stderr, flush=True))
    train, test = load_digits("train").images, load_digits("test").images
    rows = baseline_rows(args, space, train, test)
    chosen = contenders(args.big_step)
    if args.only:
        keep = set(args.only.split(","))
        unknown = keep - {c.key for c in chosen}
        if unknown:
            raise SystemExit(f"--only: unknown rows {sorted(unknown)}")
        chosen = [c for c in chosen if c.key in keep]
    def done(row: Row) -> Row:
        short = row.scores.get("short", {})
        print(f"[{time.perf_counter() - started:5.0f} s] {row.key:13s} FID "
              f"{short.get('fid', math.nan):.3f}" + (f" ({row.error})" if row.error else ""),
              file=sys.stderr, flush=True)
        return row

    if args.jobs > 1 and len(chosen) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")
                                 ) as pool:
            futures = [pool.submit(run_ebm, c, args) for c in chosen]
            rows += [done(f.result()) for f in futures]
    else:
        rows += [done(run_ebm(c, args)) for c in chosen]
    text = report(args, rows, space, time.perf_counter() - started)
    (args.out / f"{args.name}.md").write_text(text + "\n")
    print(text)
    summary = {f"{r.key}:{kind}": {"fid": round(d["fid"], 4), "kid": round(d["kid"], 5)}
               for r in rows for kind, d in r.scores.items() if "fid" in d}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

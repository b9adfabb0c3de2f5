"""Figure 1 of the SteinCD/SteinGAN paper at CPU scale: a Gaussian–Bernoulli RBM with 10
hidden units learned by CD-1, CD-10 (Langevin), SteinCD, SteinGAN (with and without the
kernel) and SteinCD-GAN(α), scored by the EXACT test log-likelihood (log Z enumerated over
the 2¹⁰ hidden states) over training.

Data: the 8×8 digits shipped with scikit-learn (1,500 train / 297 test; pixels in [0, 1])
or MNIST from IDX files (``--data mnist --path DIR``). Every method trains through
``ebmlab.train.Trainer`` (the ``ebmlab train`` loop) with the same RBM initialisation,
batch, optimiser and schedule; log-likelihoods are nats per image in pixel units
(the global standardisation's Jacobian is included).

Also reported:
* diversity of each method's samples: mean pairwise distance, and nearest-neighbour
  coverage of the test set (SteinGAN: generator samples; CD-type: the RBM's block-Gibbs
  chains, shown as their noise-free means E[x | h] = b + Bh);
* baselines a user might pick instead: a diagonal Gaussian with one shared variance
  (the RBM without hidden units) and scikit-learn ``GaussianMixture`` models.

    python bench/stein_rbm.py --quick            # < 10 min on 2 cores, one seed
    python bench/stein_rbm.py                    # 3 seeds, longer training
    python bench/stein_rbm.py --data mnist --path ~/data/mnist --iterations 3000

Writes ``bench/out/stein_rbm/`` (report.md, curves.png, samples_*.png) and prints the
report; the last stdout line is one JSON object ``{method: final test log-likelihood}``
(mean over seeds).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ebmlab.config import load_config
from ebmlab.experiment import Data, RunConfig, load_data
from ebmlab.plots import plot_image_grid
from ebmlab.train import Trainer

HERE = Path(__file__).resolve().parent

# The settings every method shares: the RBM, batch, Adam (β₁ = 0.5), cosine schedule.
COMMON = ["model.name=rbm", "model.n_hidden=10", "train.batch_size=100",
          "train.optimizer=adam", "train.beta1=0.5", "train.lr_schedule=cosine"]
# CD-type methods: energy lr 3e-3. SteinGAN-type: energy lr 1e-3, generator lr 5e-3 (the
# paper's generator/energy lr ratio is 2; a faster generator keeps it near the moving
# model). Chosen by a short sweep on the digits (lr 1e-3/3e-3, generator 2e-3/5e-3).
LANGEVIN = ["sampler.name=langevin", "sampler.step_size=0.1", "train.lr=3e-3"]
SVGD = ["sampler.name=svgd", "sampler.step_size=0.1"]
GAN = [*SVGD, "method.name=steingan", "train.lr=1e-3", "optim.generator.lr=5e-3",
       "generator.name=deconv", "generator.width=16", "generator.latent_dim=16"]


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    overrides: tuple[str, ...]


CONTENDERS = (
    Contender("cd1", "CD-1 (Langevin, s = 0.1)", ("method.name=cd", "method.n_steps=1",
                                                  *LANGEVIN)),
    Contender("cd10", "CD-10 (Langevin, s = 0.1)", ("method.name=cd", "method.n_steps=10",
                                                    *LANGEVIN)),
    Contender("steincd", "SteinCD (one SVGD step, ε = 0.1)",
              ("method.name=steincd", *SVGD, "train.lr=3e-3")),
    Contender("steingan", "SteinGAN (RBF kernel)", tuple(GAN)),
    Contender("steingan_nokernel", "SteinGAN without the kernel", (*GAN, "method.kernel=none")),
    Contender("steincd_gan_0.1", "SteinCD-GAN(α = 0.1)", (*GAN, "method.cd_prob=0.1")),
    Contender("steincd_gan_0.25", "SteinCD-GAN(α = 0.25)", (*GAN, "method.cd_prob=0.25")),
    Contender("steincd_gan_0.5", "SteinCD-GAN(α = 0.5)", (*GAN, "method.cd_prob=0.5")),
)


@dataclass
class Result:
    contender: Contender
    seed: int
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # (it, s, test LL)
    train_ll: float = math.nan
    diversity: dict[str, float] = field(default_factory=dict)
    samples: Tensor | None = None
    image_shape: tuple[int, ...] | None = None
    error: str | None = None

    @property
    def final(self) -> float:
        return self.curve[-1][2] if self.curve else math.nan


def sample_images(trainer: Trainer, n: int, gen: torch.Generator) -> Tensor:
    """Pixel-space samples: the generator's, else the RBM's Gibbs chains as E[x | h]."""
    method, energy = trainer.method, trainer.energy
    with torch.no_grad():
        if getattr(method, "generator", None) is not None:
            z = method.sample(n, rng=gen)
        else:
            x = energy.sample(n, n_steps=1000, generator=gen)
            h = energy.sample_hidden(x, generator=gen)
            z = (energy.b + h.to(energy.B.dtype) @ energy.B.T).to(x.dtype)
    z = z.reshape(n, *trainer.data.shape)
    return trainer.data.to_data_space(z).clamp(0, 1).reshape(n, -1).cpu()


def diversity(samples: Tensor, reference: Tensor, test: Tensor) -> dict[str, float]:
    """Mean pairwise distance of the samples, and NN coverage: the share of test images
    that have a sample within τ, τ = the median distance from a test image to its nearest
    ``reference`` image (real training images, as many as samples: they score 0.5)."""
    s, ref, te = samples.double(), reference.double(), test.double()
    n = s.shape[0]
    spread = float(torch.cdist(s, s).sum() / (n * (n - 1)))
    tau = torch.cdist(te, ref).min(dim=1).values.median()
    nn_sample = torch.cdist(te, s).min(dim=1).values
    return {"pairwise": spread, "coverage": float((nn_sample <= tau).double().mean())}


def settings(c: Contender, args: argparse.Namespace) -> list[str]:
    """The contender's overrides, with ``--lr-generator`` applied to SteinGAN-type runs."""
    if not args.lr_generator or "method.name=steingan" not in c.overrides:
        return list(c.overrides)
    return [o for o in c.overrides if not o.startswith("optim.generator.lr=")] + [
        f"optim.generator.lr={args.lr_generator:g}"]


def run_one(c: Contender, seed: int, args: argparse.Namespace) -> Result:
    res = Result(c, seed)
    overrides = [*data_overrides(args), *COMMON, *settings(c, args),
                 f"train.iterations={args.iterations}",
                 f"train.seed={seed}", "train.progress=false", "train.plot_every=0",
                 "train.ckpt_every=1000000000", "train.log_every=1000000000",
                 f"train.threads={args.threads}", "train.quality_samples=0"]
    cfg = load_config(RunConfig, overrides=overrides)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp), log=lambda s: None)
        seconds = 0.0
        marks = set(np.linspace(0, args.iterations, args.evals + 1).round().astype(int))
        try:
            for it in range(args.iterations + 1):
                if it in marks:
                    evaluation = trainer.evaluate()
                    res.curve.append((it, seconds, evaluation["test_ll"]))
                    res.train_ll = evaluation["train_ll"]
                if it < args.iterations:
                    t0 = time.perf_counter()
                    trainer.train_step()
                    seconds += time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - report a failed method, keep the others
            res.error = f"{type(e).__name__}: {e}"
            return res
        gen = torch.Generator().manual_seed(seed + 77)
        data = trainer.data
        n = min(1000, data.train.shape[0])
        res.samples, res.image_shape = sample_images(trainer, n, gen), data.image_shape
        res.diversity = diversity(res.samples,
                                  data.to_data_space(data.train[:n]).reshape(n, -1).cpu(),
                                  data.to_data_space(data.test).flatten(1).cpu())
    return res


def data_overrides(args: argparse.Namespace) -> list[str]:
    return [f"data.name={args.data}", *([f"data.path={args.path}"] if args.path else []),
            *([f"data.max_items={args.max_items}"] if args.max_items else [])]


def bench_data(args: argparse.Namespace) -> Data:
    return load_data(load_config(RunConfig, overrides=data_overrides(args)).data)


def baselines(data: Data) -> dict[str, float]:
    """Exact test log-likelihoods (nats per image, pixel units) of simple density models."""
    from sklearn.mixture import GaussianMixture

    train = data.to_data_space(data.train).flatten(1).double().numpy()
    test = data.to_data_space(data.test).flatten(1).double().numpy()
    d = train.shape[1]
    out = {}
    # The RBM with B = 0: N(mean, σ²I) with σ the global pixel sd (σ = 1 in standardised units).
    sigma2 = float(data.scale.reshape(-1)[0]) ** 2
    mu = train.mean(0)
    ll = -0.5 * (((test - mu) ** 2).sum(1) / sigma2 + d * math.log(2 * math.pi * sigma2))
    out["gaussian_shared_var"] = float(ll.mean())
    for k, cov in ((1, "diag"), (10, "diag"), (10, "full")):
        gm = GaussianMixture(k, covariance_type=cov, reg_covar=1e-2, random_state=0,
                             max_iter=200).fit(train)
        out[f"gmm_{k}_{cov}"] = float(gm.score(test))
    return out


def plot_curves(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    keys = list(dict.fromkeys(r.contender.key for r in results))
    for i, key in enumerate(keys):
        runs = [r for r in results if r.contender.key == key and r.curve]
        if not runs:
            continue
        its = [p[0] for p in runs[0].curve]
        lls = np.array([[p[2] for p in r.curve] for r in runs if len(r.curve) == len(its)])
        style = "-" if key in ("cd1", "cd10", "steincd") else "--"
        ax.plot(its, lls.mean(0), style, color=f"C{i}", label=runs[0].contender.label)
    ax.set_xlabel("iteration")
    ax.set_ylabel("exact test log-likelihood (nats / image)")
    finals = [r.final for r in results if r.curve and math.isfinite(r.final)]
    if finals:
        ax.set_ylim(min(finals) - 8, max(finals) + 2)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fmt(v: float, digits: int = 2) -> str:
    return "–" if not math.isfinite(v) else f"{v:.{digits}f}"


def report(args: argparse.Namespace, results: list[Result], base: dict[str, float],
           test_div: dict[str, float], n_ref: int, elapsed: float
           ) -> tuple[str, dict[str, float]]:
    command = "python bench/stein_rbm.py " + " ".join(shlex.quote(a) for a in args.argv)
    lines = [
        "# Gaussian–Bernoulli RBM (10 hidden units): exact test log-likelihood",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"- {platform.platform()}, Python {platform.python_version()}, torch "
        f"{torch.__version__}, {args.threads} thread(s); {time.strftime('%Y-%m-%d')}, ebmlab "
        f"{importlib.metadata.version('ebmlab')}; wall time {elapsed:.0f} s",
        f"- data {args.data}; {args.iterations} iterations per run, seeds {args.seeds}; "
        f"shared: `{' '.join(COMMON)}`",
        "",
        "| method | test LL (nats/image) | train LL | training s | sample spread | "
        "NN coverage | settings |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    finals: dict[str, float] = {}
    for c in dict.fromkeys(r.contender for r in results):
        runs = [r for r in results if r.contender.key == c.key]
        ok = [r for r in runs if r.error is None and r.curve]
        if not ok:
            errs = "; ".join(r.error or "no result" for r in runs)
            lines.append(f"| {c.label} | failed: {errs} | | | | | |")
            finals[c.key] = math.nan
            continue
        ll = [r.final for r in ok]
        finals[c.key] = statistics.fmean(ll)
        sd = f" ± {statistics.stdev(ll):.2f}" if len(ll) > 1 else ""
        lines.append(
            f"| {c.label} | {finals[c.key]:.2f}{sd} | "
            f"{fmt(statistics.fmean(r.train_ll for r in ok))} | "
            f"{statistics.fmean(r.curve[-1][1] for r in ok):.0f} | "
            f"{statistics.fmean(r.diversity['pairwise'] for r in ok):.2f} | "
            f"{statistics.fmean(r.diversity['coverage'] for r in ok):.3f} | "
            f"`{' '.join(o for o in settings(c, args) if not o.startswith('generator.'))}` |")
    lines += [
        f"| *{n_ref} training images (reference)* | | | | {test_div['pairwise']:.2f} | "
        f"{test_div['coverage']:.3f} | |",
        "",
        f"Sample spread = mean pairwise distance of {n_ref} samples in pixel units; NN "
        "coverage = share of test images with a sample within τ, τ = the median distance "
        f"from a test image to its nearest of {n_ref} training images (so those training "
        "images score 0.5; a collapsed sampler scores near 0). SteinGAN "
        "samples are the generator's; CD-type samples are the RBM's block-Gibbs chains "
        "(1000 sweeps) shown as E[x | h] = b + Bh.",
        "",
        "Baselines (exact test log-likelihood, same data and units):",
        "",
        "| model | test LL (nats/image) |",
        "|---|---:|",
        *[f"| {k} | {v:.2f} |" for k, v in base.items()],
        "",
        "`gaussian_shared_var` is the RBM with B = 0 (one variance for every pixel, as the "
        "GB-RBM's unit-variance visibles after global standardisation); the GaussianMixture "
        "models (scikit-learn, `reg_covar=1e-2`) learn per-pixel variances, which the "
        "GB-RBM cannot: on images with always-blank border pixels that alone is worth many "
        "nats.",
        "",
        "Curves: `curves.png`; samples: `samples_<method>.png`.",
    ]
    return "\n".join(lines), finals


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one seed, shorter runs (< 10 min)")
    p.add_argument("--data", default="digits", choices=["digits", "mnist", "fashion_mnist"])
    p.add_argument("--path", default=None, help="folder of the IDX files (mnist)")
    p.add_argument("--max-items", type=int, default=None, help="cap on train/test images")
    p.add_argument("--iterations", type=int, default=None,
                   help="iterations per run (default 6000; 4000 with --quick)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds (default 0 1 2; 0 with --quick)")
    p.add_argument("--evals", type=int, default=20, help="test-LL evaluations per run")
    p.add_argument("--methods", default=",".join(c.key for c in CONTENDERS))
    p.add_argument("--lr-generator", type=float, default=None,
                   help="generator learning rate of the SteinGAN-type runs (default 5e-3)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE.parent / "docs" / "results" / "stein_rbm",
                   help="report and figures (default docs/results/stein_rbm/, quoted by the "
                   "README)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.iterations = args.iterations or (4000 if args.quick else 6000)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    keys = {c.key for c in CONTENDERS}
    if set(args.methods.split(",")) - keys:
        p.error(f"--methods: choose from {sorted(keys)}")
    if args.data != "digits" and not args.path:
        p.error(f"--data {args.data} needs --path (the folder of its IDX files)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = [c for c in CONTENDERS if c.key in args.methods.split(",")]
    results = []
    for c in chosen:
        for seed in args.seeds:
            r = run_one(c, seed, args)
            print(f"[{time.perf_counter() - started:5.0f} s] {c.key:18s} seed {seed}: test LL "
                  f"{fmt(r.final)}" + (f" ({r.error})" if r.error else ""), file=sys.stderr,
                  flush=True)
            results.append(r)
            if r.samples is not None and seed == args.seeds[0]:
                plot_image_grid(r.samples[:64], args.out / f"samples_{c.key}.png",
                                image_shape=r.image_shape,
                                value_range=(0.0, 1.0), title=c.label)
    data = bench_data(args)
    base = baselines(data)
    test = data.to_data_space(data.test).flatten(1).cpu()
    train = data.to_data_space(data.train).flatten(1).cpu()
    n = min(1000, train.shape[0])
    test_div = diversity(train[:n], train[:n], test)
    plot_curves(results, args.out / "curves.png")
    text, finals = report(args, results, base, test_div, n, time.perf_counter() - started)
    (args.out / "report.md").write_text(text + "\n")
    print(text)
    print(json.dumps({k: round(v, 4) if math.isfinite(v) else None for k, v in finals.items()}))


if __name__ == "__main__":
    main()

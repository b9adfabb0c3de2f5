"""Image completion of held-out images: a trained run against the baselines a user would try
first (mean-image fill, 1- and 5-nearest-neighbour fill from the training set on the visible
pixels), PSNR / SSIM on the missing pixels for the masks center, bottom_half and random:0.5.

    ebmlab train --config configs/digits_cd_inpaint.toml --out runs/digits_cd_inpaint
    python bench/inpaint.py --run runs/digits_cd_inpaint --steps 1000 --samples 4

``--run`` repeated compares several runs on the same data (one row per run and step count).

Writes a Markdown report (``--out``, default docs/results/inpaint_<data>.md); the last
stdout line is one JSON object with the headline numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from ebmlab import inpaint as ip
from ebmlab.run import Run

MASKS = ("center", "bottom_half", "random:0.5")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, action="append",
                   help="a trained run directory; repeat to compare runs on the same data "
                   "(rows named by each run's method)")
    p.add_argument("--steps", default="1000", help="sampler steps, comma-separated list")
    p.add_argument("--samples", type=int, default=4, help="completions averaged per image")
    p.add_argument("--masks", default=",".join(MASKS))
    p.add_argument("--limit", type=int, default=None, help="first N test images only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="report file (default docs/results/"
                   "inpaint_<data>.md)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = [Run(path) for path in args.run]
    run = runs[0]
    data = run.trainer.data
    for other in runs[1:]:
        if other.trainer.data.name != data.name or other.trainer.data.shape != data.shape:
            raise SystemExit(f"--run {other.path}: data {other.trainer.data.name!r} differ "
                             f"from {run.path}'s {data.name!r}")
    train = data.to_data_space(data.train).cpu()
    test = data.to_data_space(data.test).cpu()[: args.limit]
    r = ip.data_range(train)
    steps = [int(s) for s in args.steps.split(",")]
    rows, headline = [], {}
    for spec in args.masks.split(","):
        mask = ip.named_mask(spec, data.shape, len(test), seed=args.seed)
        fills = {"mean image": lambda m=mask: ip.mean_fill(train, test, m),
                 "1-NN": lambda m=mask: ip.knn_fill(train, test, m, 1),
                 "5-NN": lambda m=mask: ip.knn_fill(train, test, m, 5)}
        for each in runs:
            for n in steps:
                fills[f"{each.method.name}, {n} steps × {args.samples}"] = (
                    lambda m=mask, n=n, each=each: ip.complete_images(
                        each.method, each.trainer.data, test, m, samples=args.samples,
                        n_steps=n, seed=args.seed))
        for name, fill in fills.items():
            start = time.perf_counter()
            s = ip.score(fill(), test, mask, r)
            rows.append((spec, name, s, time.perf_counter() - start))
            headline[f"{spec}/{name}"] = round(s["psnr_missing"], 2)
            print(f"{spec:12s} {name:32s} PSNR {s['psnr_missing']:6.2f} dB  SSIM "
                  f"{s['ssim_missing']:.3f}  ({rows[-1][3]:.1f} s)", file=sys.stderr)
    out = Path(args.out or f"docs/results/inpaint_{data.name}.md")
    lines = [f"# Image completion: {data.name}, held-out images", "",
             f"Command: `python bench/inpaint.py {' '.join(argv or sys.argv[1:])}`  ",
             "Runs: " + "; ".join(f"`{each.path}` ({each.config.method.name}, iteration "
                                  f"{each.iteration})" for each in runs) + "; "
             f"{len(test)} test images; data range R = {r:g}; seed {args.seed}; "
             f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, "
             f"{platform.processor() or platform.machine()}, {args.threads} thread(s).", "",
             "PSNR and SSIM on the missing pixels (whole-image numbers in brackets), means "
             "over images.", "",
             "| mask | completion | PSNR missing (dB) | SSIM missing | PSNR whole | "
             "SSIM whole | seconds |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for spec, name, s, sec in rows:
        lines.append(f"| {spec} | {name} | {s['psnr_missing']:.2f} | {s['ssim_missing']:.3f} "
                     f"| ({s['psnr_whole']:.2f}) | ({s['ssim_whole']:.3f}) | {sec:.1f} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(json.dumps(headline))
    return headline


if __name__ == "__main__":
    main()

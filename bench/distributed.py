"""Training throughput with 1 vs N processes (torch.distributed, one thread each).

The same run — persistent maximum likelihood with a ConvNet energy on the built-in 8×8
digits (K = 20 Langevin steps per iteration, global batch ``--batch``) — is trained with
``ebmlab train --nproc 1`` and ``--nproc N``, alternating, ``--reps`` times each. Throughput
is training examples per second of training time (``seconds`` in ``metrics.jsonl``, which
excludes start-up and the final evaluation), measured after ``--warmup`` iterations. With
N processes each rank runs ``batch / N`` chains, so the speed-up is what the same
learning gains from N cores.

    python bench/distributed.py                  # 1 vs 2 processes on this machine
    python bench/distributed.py --quick
    python bench/distributed.py --nproc 4 --batch 256

Report: stdout and ``docs/results/distributed.md`` (``--out``); the last stdout line is a
JSON object with the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def settings(args: argparse.Namespace, batch: int) -> list[str]:
    return ["--set", "data.name=digits", "--set", "model.name=conv",
            "--set", f"model.width={args.width}", "--set", "model.depth=2",
            "--set", "method.name=persistent", "--set", "method.n_steps=20",
            "--set", "samplers.negatives.name=langevin",
            "--set", "samplers.negatives.step_size=0.01",
            "--set", f"train.batch_size={batch}",
            "--set", f"train.iterations={args.iterations}", "--set", "train.log_every=1",
            "--set", "train.progress=false", "--set", "train.plot_every=0",
            "--set", f"train.ckpt_every={args.iterations}", "--set", "train.longrun_factor=1",
            "--set", "train.threads=1", "--set", "train.divergence_check=false"]


def throughput(nproc: int, args: argparse.Namespace, independent: bool = False) -> float:
    """Examples per second of training time after the warm-up iterations.

    ``independent``: instead of one run with ``nproc`` ranks, ``nproc`` single-process runs
    of ``batch / nproc`` chains at the same time, with no communication — the most that
    ``nproc`` processes can gain on this machine (the control row)."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = ([(1, args.batch // nproc, Path(tmp) / f"run{i}") for i in range(nproc)]
                if independent else [(nproc, args.batch, Path(tmp) / "run")])
        procs = [subprocess.Popen(
            [sys.executable, "-m", "ebmlab", "train", "--nproc", str(n),
             *settings(args, batch), "--out", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, OMP_NUM_THREADS="1")) for n, batch, out in runs]
        total = 0.0
        for proc, (n, batch, out) in zip(procs, runs, strict=True):
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"nproc {n} failed: {err.strip()[-500:]}")
            rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            # training rows only (evaluations and session records carry no training time)
            by_it = {r["iteration"]: r["seconds"] for r in rows
                     if "seconds" in r and "iteration" in r}
            last = max(by_it)
            total += (last - args.warmup) * batch / (by_it[last] - by_it[args.warmup])
    return total


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--batch", type=int, default=128, help="global batch (chains per iteration)")
    p.add_argument("--width", type=int, default=32, help="channels of the ConvNet's first block")
    p.add_argument("--iterations", type=int, default=None, help="per run (default 150; 60 quick)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--reps", type=int, default=None, help="runs per setting (default 3; 1 quick)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=HERE.parent / "docs" / "results" /
                   "distributed.md")
    args = p.parse_args(argv)
    args.iterations = args.iterations or (60 if args.quick else 150)
    args.reps = args.reps or (1 if args.quick else 3)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    settings_ = {"1": (1, False), str(args.nproc): (args.nproc, False),
                 "control": (args.nproc, True)}
    results: dict[str, list[float]] = {k: [] for k in settings_}
    for rep in range(args.reps):
        keys = list(settings_) if rep % 2 == 0 else list(reversed(settings_))
        for k in keys:
            n, independent = settings_[k]
            results[k].append(throughput(n, args, independent))
            print(f"[bench] rep {rep} {k}: {results[k][-1]:.0f} examples/s", flush=True)
    one, many = statistics.median(results["1"]), statistics.median(results[str(args.nproc)])
    ceiling = statistics.median(results["control"])
    speedup = many / one
    ratios = [b / a for a, b in zip(results["1"], results[str(args.nproc)], strict=True)]
    command = "python bench/distributed.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    lines = [
        "# Multi-process training throughput", "",
        f"Command: `{command.strip()}`", "",
        f"- {platform.platform()}, Python {platform.python_version()}, torch "
        f"{torch.__version__}, {os.cpu_count()} CPUs visible, one thread per process; "
        f"{time.strftime('%Y-%m-%d')}; load average at start {load:.2f}; "
        f"wall {time.perf_counter() - started:.0f} s",
        f"- run: persistent ML, ConvEnergy(width {args.width}, 2 blocks) on the 8×8 digits, "
        f"K = 20 Langevin steps, global batch {args.batch}, {args.iterations} iterations "
        f"(first {args.warmup} excluded), {args.reps} run(s) per setting, alternating",
        "",
        "| processes | examples / s (median) | runs | speed-up |",
        "|---:|---:|---|---:|",
        f"| 1 | {one:.0f} | {', '.join(f'{v:.0f}' for v in results['1'])} | 1.00 |",
        f"| {args.nproc} | {many:.0f} | "
        f"{', '.join(f'{v:.0f}' for v in results[str(args.nproc)])} | "
        f"{speedup:.2f} (per pair: {', '.join(f'{r:.2f}' for r in ratios)}) |",
        f"| control: {args.nproc} independent 1-process runs of batch {args.batch // args.nproc},"
        f" summed | {ceiling:.0f} | {', '.join(f'{v:.0f}' for v in results['control'])} | "
        f"{ceiling / one:.2f} |",
        "",
        f"The control row is what {args.nproc} processes gain on this machine with no "
        f"communication at all: the distributed run reaches {many / ceiling:.0%} of it.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(json.dumps({"nproc": args.nproc, "speedup": round(speedup, 3),
                      "control_speedup": round(ceiling / one, 3),
                      "examples_per_s_1": round(one, 1),
                      f"examples_per_s_{args.nproc}": round(many, 1)}))


if __name__ == "__main__":
    main()

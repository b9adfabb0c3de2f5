"""Do ebmlab's defaults learn 2-D densities they were not tuned on?

For each density of ``bench/unseen2d.py`` (curved bananas, rings of thin anisotropic
components, curves of many small components) and each seed: write 20,000 exact draws
to a ``.npy``, run ``ebmlab train --set data.name=npy --set data.path=FILE`` (the
defaults, plus any ``--set``) as a subprocess and time the whole command, then score the
trained run by the exact ``KL(p_data ‖ p_θ)`` on the density's box with
``ebmlab.evaluate.exact2d.evaluate_2d`` — whose log Z counts the model's mass outside
the box (``model_mass_outside``), so a model that leaks mass cannot look good.

Baseline, what a user would try instead: scikit-learn's Gaussian ``KernelDensity`` on the
same 20,000 points, its bandwidth chosen by held-out log-likelihood (10 % held out, a grid
of 14 bandwidths, then refit on all), scored by ``KL = E_p[log p − log kde]`` by Monte
Carlo on 20,000 fresh draws (± its standard error).

    python bench/defaults.py                            # every density, seeds 0 and 1
    python bench/defaults.py --densities ring8 --seeds 0 --set method.n_steps=10

The report (command, date, versions, table) goes to ``docs/results/defaults.md``; the
last stdout line is one JSON object with the headline numbers.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import unseen2d  # noqa: E402

GOAL_KL, GOAL_SECONDS = 0.05, 120.0


def kde_baseline(x: np.ndarray, density, seed: int, n_eval: int = 20000) -> tuple[float, float]:
    """KL(p ‖ KDE) ± its Monte-Carlo standard error, bandwidth by held-out likelihood."""
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KernelDensity

    fit, held = train_test_split(x, test_size=0.1, random_state=seed)
    grid = np.geomspace(0.02, 0.6, 14)
    scores = [KernelDensity(bandwidth=h).fit(fit).score(held) for h in grid]
    kde = KernelDensity(bandwidth=float(grid[int(np.argmax(scores))])).fit(x)
    y = density.sample(n_eval, 10_000 + seed)
    diff = density.log_prob(y).double().numpy() - kde.score_samples(y.numpy())
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff)))


def train_and_score(density, seed: int, sets: list[str], folder: Path) -> dict:
    from ebmlab import load_run
    from ebmlab.evaluate.exact2d import evaluate_2d

    data = unseen2d.write_npy(density, folder / f"{density.name}_{seed}.npy", 20000, seed)
    out = folder / f"run_{density.name}_{seed}"
    args = [str(Path(sys.executable).parent / "ebmlab"), "train", "--out", str(out),
            "--set", "data.name=npy", "--set", f"data.path={data}",
            "--set", f"train.seed={seed}", "--set", "train.progress=false"]
    for s in sets:
        args += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    wall = time.perf_counter() - t0
    row = {"density": density.name, "kind": density.kind, "seed": seed, "rc": proc.returncode,
           "wall_s": round(wall, 1)}
    if proc.returncode != 0:
        row["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
    try:
        run = load_run(out)
        r = evaluate_2d(run.energy, density.log_prob, bounds=density.bounds)
        row.update(kl=r["kl"], model_mass_outside=r["model_mass_outside"],
                   tail_converged=bool(r["tail_converged"]))
    except Exception as e:  # noqa: BLE001 - a run that left no model is reported, not fatal
        row.setdefault("error", f"{type(e).__name__}: {e}"[:200])
    return row


def report(args: argparse.Namespace, rows: list[dict], elapsed: float) -> str:
    command = "python bench/defaults.py " + " ".join(shlex.quote(a) for a in args.argv)
    lines = [
        "# Defaults on 2-D densities they were not tuned on",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"- {time.strftime('%Y-%m-%d')}; {platform.platform()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}, ebmlab "
        f"{importlib.metadata.version('ebmlab')}; seeds {args.seeds}; wall time "
        f"{elapsed:.0f} s; {os.cpu_count()} cores, one training at a time, 1 thread each",
        "- `ebmlab train --set data.name=npy --set data.path=FILE` with the defaults"
        + (f" and `{' '.join(args.set)}`" if args.set else "") + " on 20,000 exact draws;",
        "  *time* = the whole command (training, evaluation, figures); *KL* = exact "
        "KL(p_data ‖ p_θ) on the density's box, log Z over the whole plane "
        "(`evaluate_2d`), *outside* = the model's mass outside the box;",
        "- *KDE* = scikit-learn `KernelDensity`, bandwidth by held-out likelihood, KL by "
        "Monte Carlo (± s.e.). Roles: *tuned* densities were used to choose the defaults, "
        "*held out* ones were not.",
        "",
        "| density | kind | role | seed | time (s) | KL (nats) | outside | KDE KL | exit |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        kl = f"{r['kl']:.4f}" if "kl" in r else "–"
        out = f"{r['model_mass_outside']:.1e}" if "model_mass_outside" in r else "–"
        kde = f"{r['kde_kl']:.4f} ± {r['kde_se']:.4f}" if "kde_kl" in r else "–"
        role = "tuned" if r["density"] in unseen2d.TUNE else "held out"
        lines.append(f"| {r['density']} | {r['kind']} | {role} | {r['seed']} | {r['wall_s']} | "
                     f"{kl} | {out} | {kde} | {r['rc']} |")
    ok = [r for r in rows if r.get("kl", math.inf) <= GOAL_KL and r["wall_s"] <= GOAL_SECONDS]
    lines += ["", f"Goal (KL ≤ {GOAL_KL} nats in ≤ {GOAL_SECONDS:g} s): met in {len(ok)} of "
              f"{len(rows)} runs.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--densities", default=",".join(unseen2d.densities()))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--no-kde", action="store_true", help="skip the KDE baseline")
    p.add_argument("--out", type=Path, default=HERE.parent / "docs" / "results" / "defaults.md")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    all_densities = unseen2d.densities()
    names = args.densities.split(",")
    unknown = sorted(set(names) - set(all_densities))
    if unknown:
        p.error(f"unknown densities {unknown}; choose from {sorted(all_densities)}")
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ebmlab-defaults-") as tmp:
        for seed in args.seeds:
            for name in names:
                d = all_densities[name]
                row = train_and_score(d, seed, args.set, Path(tmp))
                if not args.no_kde:
                    x = np.load(Path(tmp) / f"{name}_{seed}.npy")
                    row["kde_kl"], row["kde_se"] = kde_baseline(x, d, seed)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    text = report(args, rows, time.perf_counter() - started)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    kls = [r.get("kl", math.inf) for r in rows]
    print(json.dumps({"max_kl": max(kls), "max_wall_s": max(r["wall_s"] for r in rows),
                      "runs": len(rows), "goal_met": sum(k <= GOAL_KL for k in kls)}))


if __name__ == "__main__":
    main()

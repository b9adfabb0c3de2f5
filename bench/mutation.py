"""Mutation testing of the samplers, the evaluation code, the methods and the divergence
rule (a bench script, not run in CI).

A small AST mutator: every mutation site of the target modules is enumerated, one
mutant at a time is written into a private copy of ``src/`` and ``tests/`` (the
working tree is never touched), the tests that cover that module run with a
timeout, and mutants the tests do not kill are printed as survivors.

Operators: ``+ ↔ -``, ``* ↔ /``, ``< ↔ <=``, ``> ↔ >=``, ``== ↔ !=``, ``and ↔ or``,
``True ↔ False``, numeric constants ×1.1 (integers +1), unary minus dropped, and a
statement dropped (replaced by ``pass``). Not mutated: docstrings and other strings,
``raise`` statements (messages and argument checks), annotations, ``__all__``.

    python bench/mutation.py                       # all sites of samplers/ and evaluate/
    python bench/mutation.py --max-mutants 150 --seed 0 --jobs 2 --budget 1500
    python bench/mutation.py --only samplers/metropolis.py --list

Timeouts count as killed. ``--budget`` stops launching new mutants after that many
seconds (the sample stays unbiased: mutants run in a shuffled order). The summary
gives tried / killed / survived per module and every survivor with its line.
"""

from __future__ import annotations

import argparse
import ast
import copy
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "ebmlab"

# Module (relative to src/ebmlab) -> the test files that cover it, fastest first; and a
# pytest -k filter (the torch.compile tests cost ~10 s and only cover langevin.py).
TARGETS: dict[str, tuple[list[str], str | None]] = {
    "samplers/base.py": (["tests/test_sampler_hygiene.py", "tests/test_samplers_statistical.py",
                          "tests/test_samplers_contract.py"], "not compiled"),
    "samplers/adaptation.py": (["tests/test_samplers_statistical.py",
                                "tests/test_samplers_contract.py"], "not compiled"),
    "samplers/langevin.py": (["tests/test_samplers_statistical.py",
                              "tests/test_samplers_contract.py"], None),
    "samplers/metropolis.py": (["tests/test_samplers_statistical.py",
                                "tests/test_samplers_contract.py"], "not compiled"),
    "samplers/svgd.py": (["tests/test_samplers_statistical.py", "tests/test_sampler_hygiene.py",
                          "tests/test_samplers_contract.py"], "not compiled"),
    "samplers/underdamped.py": (["tests/test_samplers_statistical.py",
                                 "tests/test_samplers_contract.py"], "not compiled"),
    "evaluate/exact2d.py": (["tests/test_exact2d.py"], None),
    "evaluate/mmd.py": (["tests/test_evaluate_mmd.py"], None),
    "evaluate/sample_quality.py": (["tests/test_evaluate_sample_quality.py"], None),
    "methods/base.py": (["tests/test_mle.py", "tests/test_method_contract.py"], None),
    "methods/mle.py": (["tests/test_mle.py", "tests/test_method_contract.py"], None),
    "methods/stein.py": (["tests/test_stein.py", "tests/test_method_contract.py"], None),
    "divergence.py": (["tests/test_train_safety.py"], "monitor"),
}

BINOPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
CMPOPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
          ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # the index-th mutation site of the module, in AST walk order
    line: int
    kind: str


def _skip_ids(tree: ast.AST) -> set[int]:
    """Nodes under raise statements, annotations, docstrings and ``__all__``."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.Raise):
            mark(node)
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        elif isinstance(node, ast.arg):
            mark(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.returns)
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            mark(node)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                mark(first)
    return skip


def _sites(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """Every (node, kind) mutation site, in a deterministic order."""
    skip = _skip_ids(tree)
    out: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
            out.append((node, f"{type(node.op).__name__}->{BINOPS[type(node.op)].__name__}"))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in CMPOPS:
            op = type(node.ops[0])
            out.append((node, f"{op.__name__}->{CMPOPS[op].__name__}"))
        elif isinstance(node, ast.BoolOp):
            out.append((node, "and<->or"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            out.append((node, "drop unary -"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            out.append((node, "True<->False"))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
              and not isinstance(node.value, bool)):
            out.append((node, "const*1.1" if isinstance(node.value, float) else "int+1"))
        if isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign, ast.Return)) and not (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            out.append((node, "drop statement"))
    return out


class _Apply(ast.NodeTransformer):
    def __init__(self, target: ast.AST, kind: str) -> None:
        self.target, self.kind = target, kind

    def generic_visit(self, node: ast.AST) -> ast.AST:
        node = super().generic_visit(node)
        if node is not self.target:
            return node
        k = self.kind
        if k == "drop statement":
            return ast.copy_location(ast.Pass(), node)
        if isinstance(node, ast.BinOp):
            node.op = BINOPS[type(node.op)]()
        elif isinstance(node, ast.Compare):
            node.ops = [CMPOPS[type(node.ops[0])]()]
        elif isinstance(node, ast.BoolOp):
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        elif isinstance(node, ast.UnaryOp):
            return node.operand
        elif isinstance(node, ast.Constant):
            v = node.value
            node.value = (not v) if isinstance(v, bool) else (
                v * 1.1 if isinstance(v, float) else v + 1)
        return node


def enumerate_mutants(module: str) -> list[Mutant]:
    tree = ast.parse((PKG / module).read_text())
    return [Mutant(module, i, getattr(n, "lineno", 0), kind)
            for i, (n, kind) in enumerate(_sites(tree))]


def mutated_source(m: Mutant) -> str:
    tree = ast.parse((PKG / m.module).read_text())
    node, kind = _sites(tree)[m.index]
    assert kind == m.kind
    new = _Apply(node, kind).visit(copy.copy(tree))
    return ast.unparse(ast.fix_missing_locations(new))


def make_sandbox() -> Path:
    """A private copy of src/ and tests/ (plus pyproject.toml for pytest's options)."""
    box = Path(tempfile.mkdtemp(prefix="ebmlab-mutation-"))
    shutil.copytree(ROOT / "src", box / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "tests", box / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", box / "pyproject.toml")
    return box


def run_tests(box: Path, module: str, timeout: float) -> tuple[str, float]:
    """``("killed" | "survived" | "timeout", seconds)`` for the sandbox as it is now."""
    tests, kfilter = TARGETS[module]
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-W", "ignore", *tests]
    if kfilter:
        cmd += ["-k", kfilter]
    env = {**os.environ, "PYTHONPATH": str(box / "src"), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=box, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start
    return ("survived" if proc.returncode == 0 else "killed"), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=None,
                    help="modules relative to src/ebmlab (default: all targets)")
    ap.add_argument("--max-mutants", type=int, default=None, help="sample this many at random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="parallel sandboxes")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant")
    ap.add_argument("--budget", type=float, default=1500.0,
                    help="stop launching mutants after this many seconds")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--json", type=Path, default=None, help="write every result here")
    ap.add_argument("--rerun", type=Path, default=None,
                    help="run only the survivors recorded in this --json file")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip checking that the unmutated tests pass")
    args = ap.parse_args(argv)

    modules = args.only or list(TARGETS)
    unknown = [m for m in modules if m not in TARGETS]
    if unknown:
        ap.error(f"unknown module(s) {unknown}; choose from {list(TARGETS)}")
    mutants = [m for mod in modules for m in enumerate_mutants(mod)]
    rng = random.Random(args.seed)
    rng.shuffle(mutants)
    if args.max_mutants is not None:
        mutants = mutants[: args.max_mutants]
    if args.rerun is not None:
        old = json.loads(args.rerun.read_text())
        keep = {(r["module"], r["index"], r["kind"]) for r in old if r["status"] == "survived"}
        mutants = [m for m in (m for mod in modules for m in enumerate_mutants(mod))
                   if (m.module, m.index, m.kind) in keep]
        if len(mutants) != len(keep):
            print(f"warning: {len(keep) - len(mutants)} recorded survivors no longer match a "
                  "site (the module changed); they are not rerun", file=sys.stderr)
    if args.list:
        for m in sorted(mutants, key=lambda m: (m.module, m.line, m.index)):
            print(f"{m.module}:{m.line}  #{m.index}  {m.kind}")
        print(f"{len(mutants)} mutants")
        return 0

    boxes = [make_sandbox() for _ in range(max(1, args.jobs))]
    free = list(boxes)
    t0 = time.perf_counter()
    combos: dict[tuple, str] = {}
    for mod in sorted({m.module for m in mutants}):
        combos.setdefault((tuple(TARGETS[mod][0]), TARGETS[mod][1]), mod)
    if not args.no_baseline:  # the unmutated tests must pass
        with ThreadPoolExecutor(max_workers=len(boxes)) as pool:
            jobs = list(combos.values())
            outs = pool.map(lambda im: run_tests(boxes[im[0] % len(boxes)], im[1],
                                                 args.timeout * 3), enumerate(jobs))
            for mod, (status, secs) in zip(jobs, outs, strict=True):
                print(f"baseline (tests of {mod}): {status} ({secs:.0f} s)", flush=True)
                if status != "survived":
                    print("the unmutated tests fail: fix them first", file=sys.stderr)
                    return 2

    results: list[dict] = []
    done = itertools.count(1)

    def one(m: Mutant) -> dict | None:
        if time.perf_counter() - t0 > args.budget:
            return None
        box = free.pop()
        target = box / "src" / "ebmlab" / m.module
        original = target.read_text()
        try:
            target.write_text(mutated_source(m))
            status, secs = run_tests(box, m.module, args.timeout)
        finally:
            target.write_text(original)
            free.append(box)
        r = {**asdict(m), "status": status, "seconds": round(secs, 1)}
        src_line = original.splitlines()[m.line - 1].strip() if m.line else ""
        r["source"] = src_line
        print(f"[{next(done)}] {status:8s} {m.module}:{m.line} {m.kind}  | {src_line[:70]}",
              flush=True)
        return r

    try:
        with ThreadPoolExecutor(max_workers=len(boxes)) as pool:
            for r in pool.map(one, mutants):
                if r is not None:
                    results.append(r)
    finally:
        for b in boxes:
            shutil.rmtree(b, ignore_errors=True)

    print(f"\n{len(results)} mutants tried in {time.perf_counter() - t0:.0f} s "
          f"(of {len(mutants)} selected)")
    for mod in sorted({r["module"] for r in results}):
        rs = [r for r in results if r["module"] == mod]
        dead = sum(r["status"] != "survived" for r in rs)
        print(f"  {mod:28s} tried {len(rs):4d}  killed {dead:4d}  survived {len(rs) - dead:4d}")
    survivors = sorted((r for r in results if r["status"] == "survived"),
                       key=lambda r: (r["module"], r["line"]))
    print(f"\nsurvivors ({len(survivors)}):")
    for r in survivors:
        print(f"  {r['module']}:{r['line']}  #{r['index']}  {r['kind']:18s} | {r['source'][:80]}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

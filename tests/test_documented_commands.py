"""Every ``ebmlab ...`` command quoted in the README, in docs/ and in the presets' comments
runs as written.

Each command is run in-process (``ebmlab.cli.main``) from a scratch folder holding
``configs/`` and the files the commands name (``my_points.npy``, a small MNIST in
``~/data/mnist`` with ``HOME`` pointed at the scratch folder), in the order of its document
(later commands use earlier runs). Only the budget is cut: ``--set train.iterations=3``
(6 on ``--resume``), smaller toy draws, ``--chains 64`` / ``--steps 20`` for sampling; the
figures are built but not rendered to pixels (the plot tests render them).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from ebmlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
SETUP = ("pip install", "python3 -m venv")  # the set-up commands: CI runs those (test_readme)


def quoted_commands(path: Path) -> list[str]:
    """``ebmlab <subcommand> ...`` lines of ```bash blocks and `inline` code spans, or of a
    TOML file's comments; each as a single command (trailing ``# comment`` dropped)."""
    text = path.read_text()
    if path.suffix == ".toml":
        text = "\n".join(line.lstrip("# ") for line in text.splitlines()
                         if line.startswith("#"))
    found: list[tuple[int, str]] = []
    for block in re.finditer(r"```bash\n(.*?)```", text, flags=re.S):
        offset = block.start(1)
        for line in block.group(1).splitlines(keepends=True):
            if line.startswith("ebmlab ") and not any(s in line for s in SETUP):
                found.append((offset, line))
            offset += len(line)
    for span in re.finditer(r"`(ebmlab [a-z][^`]*)`", text):
        # A synopsis names a command's form, it is not one: "ebmlab train | eval | plot",
        # "ebmlab sample --run DIR", "ebmlab config [--show]".
        if not re.search(r" \| |\[|\b[A-Z]+\b", span.group(1)):
            found.append((span.start(), span.group(1)))
    return [" ".join(shlex.split(cmd, comments=True)) for _, cmd in sorted(found)]


def shortened(argv: list[str]) -> list[str]:
    """``argv`` with a tiny budget appended (later options win)."""
    sub = argv[0]
    if sub == "train":
        if "--resume" in argv:
            return [*argv, "--set", "train.iterations=6", "train.progress=false"]
        return [*argv, "--set", "train.iterations=3", "train.progress=false",
                "train.plot_every=0", "train.longrun_factor=1", "data.n_train=400",
                "data.n_test=200"]
    if sub == "sample":
        return [*argv, "--chains", "64"] if "--run" in argv else \
            [*argv, "--chains", "64", "--steps", "20"]
    if sub == "inpaint":
        return [*argv, "--steps", "5", "--samples", "1"]
    if sub in ("eval", "plot", "config", "--version"):
        return argv
    raise AssertionError(f"teach {__name__}.shortened how to run `ebmlab {sub}` briefly")


def _mnist(root: Path, n: int = 40) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            header = (0x800 | arr.ndim).to_bytes(4, "big") + b"".join(
                d.to_bytes(4, "big") for d in arr.shape)
            (root / f"{prefix}-{kind}-ubyte").write_bytes(header + arr.tobytes())


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A working folder as a user has it after cloning: configs/ and the named files."""
    import ebmlab.plots

    (tmp_path / "configs").symlink_to(ROOT / "configs")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "my_points.npy", rng.normal(size=(300, 2)) * [3.0, 0.5])
    np.save(tmp_path / "X.npy", rng.uniform(size=(4, 8, 8)))  # images to complete (8×8 digits)
    _mnist(tmp_path / "data" / "mnist")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)

    def unrendered(fig, path):  # the figure is built; drawing it is the plot tests' job
        fig.clear()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"")
        return out

    monkeypatch.setattr(ebmlab.plots, "_save", unrendered)
    return tmp_path


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "configs").glob("*.toml"))]
DOCUMENTS = [d for d in DOCUMENTS if not d.name.startswith("notes-")]  # helpers' notes
WITH_COMMANDS = [d for d in DOCUMENTS if quoted_commands(d)]


def test_commands_are_found():
    assert quoted_commands(ROOT / "README.md")[-1:] == ["ebmlab train"]  # the set-up's job
    guide = quoted_commands(ROOT / "docs" / "guide.md")
    assert len(guide) >= 10, guide
    assert "ebmlab train --resume runs/rings --set train.iterations=1000" in guide
    assert all(not c.startswith(("ebmlab train |", "ebmlab eval |")) for c in guide)
    steincd = quoted_commands(ROOT / "configs" / "steincd_digits.toml")
    assert steincd and steincd[0].startswith("ebmlab train --config configs/steincd_digits")


@pytest.mark.slow
@pytest.mark.parametrize("document", WITH_COMMANDS, ids=lambda p: p.name)
def test_quoted_commands_run_as_written(document, scratch, capsys):
    for command in quoted_commands(document):
        argv = shlex.split(command)[1:]
        try:
            code = main(shortened(argv))
        except SystemExit as e:  # argparse's own actions (--version) exit
            code = e.code
        err = capsys.readouterr().err
        assert code == 0, f"{document.name}: `{command}` exited {code}: {err[-1500:]}"

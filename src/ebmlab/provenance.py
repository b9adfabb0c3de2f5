"""What made a run: the versions of ebmlab, torch and Python, the command line, and the
git commit of ebmlab's source tree when it is a git checkout.

A run records one such entry per session (its start and each ``--resume``) in its
checkpoints, ``summary.json`` and the header of its ``config.toml``.
"""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ebmlab import __version__

PACKAGE_DIR = Path(__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout ebmlab is imported from, or ``(None, None)``
    (no git, or an installed copy: a package merely lying inside some other repository,
    e.g. a project's virtual environment, is not tracked by it and gets none)."""
    if _git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None, None
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return commit, None if status is None else bool(status)


def provenance(command: Sequence[str] | None = None) -> dict[str, Any]:
    """This session's entry: versions, the command line (default ``sys.argv``), git."""
    import torch

    commit, dirty = git_commit()
    argv = list(sys.argv if command is None else command)
    return {"ebmlab": __version__, "torch": torch.__version__,
            "python": platform.python_version(), "command": shlex.join(argv),
            "git_commit": commit, "git_dirty": dirty}


def header(sessions: Sequence[Mapping[str, Any]]) -> str:
    """TOML comment lines naming what wrote the file: one block per session."""
    lines = ["# The resolved config of this run: every key that applies to its data, model and",
             "# method (ebmlab config --show lists them all with their meaning)."]
    for i, s in enumerate(sessions):
        what = "started" if i == 0 else f"resumed at iteration {s.get('from_iteration', '?')}"
        git = ""
        if s.get("git_commit"):
            git = f", git {s['git_commit'][:12]}" + (" (uncommitted changes)"
                                                      if s.get("git_dirty") else "")
        lines.append(f"# {what} by ebmlab {s.get('ebmlab')} (torch {s.get('torch')}, "
                     f"python {s.get('python')}{git})")
        command = str(s.get("command", "")).replace("\n", "\\n")
        lines.append(f"#   command: {command}")
    return "\n".join(lines) + "\n\n"


__all__ = ["git_commit", "header", "provenance"]

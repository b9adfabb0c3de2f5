"""What made a run: versions, command line, and git commit of ebmlab's source tree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import ebmlab
from ebmlab import provenance

ROOT = Path(__file__).resolve().parents[1]
HAS_GIT = shutil.which("git") is not None


def test_versions_and_command():
    p = provenance.provenance(["ebmlab", "train", "--set", "data.path=a b.npy"])
    assert p["ebmlab"] == ebmlab.__version__ and p["torch"] == torch.__version__
    assert p["command"] == "ebmlab train --set 'data.path=a b.npy'"  # shell-quoted


@pytest.mark.skipif(not HAS_GIT, reason="no git")
def test_commit_of_the_checkout_ebmlab_is_imported_from():
    here = subprocess.run(["git", "-C", str(provenance.PACKAGE_DIR), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    tracked = subprocess.run(["git", "-C", str(provenance.PACKAGE_DIR), "ls-files",
                              "--error-unmatch", "__init__.py"], capture_output=True)
    if here.returncode or tracked.returncode:
        pytest.skip("ebmlab is not imported from a git checkout")
    commit, dirty = provenance.git_commit()
    assert commit == here.stdout.strip() and isinstance(dirty, bool)


@pytest.mark.skipif(not HAS_GIT, reason="no git")
def test_an_untracked_copy_inside_another_repository_has_no_commit(tmp_path, monkeypatch):
    """A package installed into a project's .venv lies inside the project's repository but
    is not tracked by it: the project's commit is not ebmlab's."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    pkg = tmp_path / ".venv" / "site-packages" / "ebmlab"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    monkeypatch.setattr(provenance, "PACKAGE_DIR", pkg)
    assert provenance.git_commit() == (None, None)


def test_no_git_at_all(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # git cannot be found
    assert provenance.git_commit() == (None, None)


def test_header_is_toml_comments():
    from ebmlab.config import tomllib

    s = {"ebmlab": "9.9", "torch": "2.x", "python": "3.11", "command": "ebmlab train\nx = 1",
         "git_commit": "0123456789abcdef", "git_dirty": True, "from_iteration": 0}
    text = provenance.header([s, {**s, "from_iteration": 40}])
    assert tomllib.loads(text) == {}  # only comments, even with a newline in the command
    assert "git 0123456789ab (uncommitted changes)" in text
    assert "resumed at iteration 40" in text

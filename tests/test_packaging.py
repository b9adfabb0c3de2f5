"""What ships with the package: its licence, its type hints (PEP 561), its changelog."""

from __future__ import annotations

from pathlib import Path

from ebmlab.config import tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_file_matches_the_declared_licence():
    assert PROJECT["project"]["license"] == {"text": "MIT"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_type_hints_are_shipped():
    assert (ROOT / "src" / "ebmlab" / "py.typed").is_file()
    assert "py.typed" in PROJECT["tool"]["setuptools"]["package-data"]["ebmlab"]


def test_changelog_names_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {PROJECT['project']['version']} " in text and "## Unreleased" in text

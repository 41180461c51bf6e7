"""Shared fixtures: a project folder to lint and a CliRunner that runs gradlint in it."""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner

@pytest.fixture
def clean_env(monkeypatch):
    """No CI or format variables from the environment leak into a test."""
    for name in ("GITHUB_ACTIONS", "GRADLINT_OUTPUT_FORMAT", "GITHUB_STEP_SUMMARY", "FORCE_COLOR", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def project(tmp_path, monkeypatch, clean_env):
    """An empty project folder (the cwd) with `write(relpath, text)` to add files."""
    monkeypatch.chdir(tmp_path)

    class Project:
        root = tmp_path

        def write(self, rel: str, text="", mode: str = "w"):
            path = tmp_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(text, bytes):
                path.write_bytes(text)
            else:
                path.write_text(textwrap.dedent(text), encoding="utf-8")
            return path

    return Project()


@pytest.fixture
def gradlint():
    """Invoke the CLI in-process: `gradlint("check", ".")` -> click Result (stdout/stderr apart)."""
    from gradlint.cli import main

    try:  # click < 8.2 mixes stderr into stdout unless told not to (8.2 keeps them apart always)
        runner = CliRunner(mix_stderr=False)
    except TypeError:
        runner = CliRunner()

    def invoke(*args: str, input=None):
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return invoke

"""Shared helpers for the runtime tests: run code or scripts traced, in-process or as `gradlint run`."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys


HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "scripts")
REPO = os.path.dirname(os.path.dirname(HERE))
EXAMPLES = os.path.join(REPO, "rules", "examples")

import torch  # noqa: E402  (after the paths: the tests import this module for both)

# The test machines are small and shared: one intra-op thread keeps timings steady.
torch.set_num_threads(1)


def run_traced(path: str, argv=()):
    """Run a script in this process under gradlint.runtime.trace(); returns the Trace."""
    import gradlint.runtime

    saved = sys.argv[:]
    sys.argv = [path, *argv]
    try:
        with gradlint.runtime.trace(cwd=REPO) as traced:
            try:
                runpy.run_path(path, run_name="__main__")
            except SystemExit:
                pass
    finally:
        sys.argv = saved
    return traced


def gradlint_run(*args, cwd=SCRIPTS, env=None, timeout=120):
    """`python -m gradlint run ARGS` in a subprocess; returns CompletedProcess (text)."""
    environ = dict(os.environ, PYTHONWARNINGS="ignore", **(env or {}))
    environ.pop("GITHUB_ACTIONS", None)
    environ.pop("GRADLINT_OUTPUT_FORMAT", None)
    return subprocess.run([sys.executable, "-m", "gradlint", "run", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout)


def finding_on(path: str, code: str, text: str):
    """A static finding of `code` (as `gradlint check` would give it) on the first line of the test
    file `path` that holds `text`, skipping lines that call a `finding...(` helper themselves."""
    from gradlint.findings import Finding

    lines = open(path).read().splitlines()
    line = next(i for i, source in enumerate(lines, 1) if text in source and "finding" not in source.split(text)[0])
    return Finding(code=code, message="m", path=os.path.relpath(path, REPO), line=line, column=1,
                   end_line=line, end_column=80)


def tracing():
    """`gradlint.runtime.trace()` rooted at the repository, as `gradlint run` from there."""
    import gradlint.runtime

    return gradlint.runtime.trace(cwd=REPO)

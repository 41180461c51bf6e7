"""A file name that is not UTF-8 (it reaches gradlint surrogate-escaped) in every report format,
on stdout and in `-o` files: never an internal error, always valid UTF-8, names shown as \\xNN,
SARIF URIs percent-encoding the name's bytes."""

from __future__ import annotations

import json
import os

import pytest

from cli_samples import LOOP_WITHOUT_ZERO_GRAD
from gradlint.fingerprint import path_bytes, printable_path

NAME = b"caf\xe9.py"  # latin-1 bytes: not UTF-8
SHOWN = "caf\\xe9.py"


@pytest.fixture
def odd_project(project):
    with open(os.path.join(os.fsencode(str(project.root)), NAME), "w", encoding="utf-8") as handle:
        handle.write(LOOP_WITHOUT_ZERO_GRAD)
    return project


def _check_document(fmt: str, text: str) -> None:
    text.encode("utf-8")  # no lone surrogates anywhere
    if fmt == "json":
        (row,) = json.loads(text)
        assert row["path"] == SHOWN and row["code"] == "GL001"
    elif fmt == "gitlab":
        (issue,) = json.loads(text)
        assert issue["location"]["path"] == SHOWN
    elif fmt == "sarif":
        (run,) = json.loads(text)["runs"]
        (result,) = run["results"]
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "caf%E9.py"
    elif fmt == "github":
        assert f"file={SHOWN}," in text
    else:
        assert text.startswith(f"{SHOWN}:")


@pytest.mark.parametrize("fmt", ["full", "concise", "json", "sarif", "github", "gitlab"])
def test_every_format_on_stdout(odd_project, gradlint, fmt):
    result = gradlint("check", "--no-cache", "--output-format", fmt, ".")
    assert result.exit_code == 1, result.stderr
    assert "internal error" not in result.stderr
    _check_document(fmt, result.stdout)


@pytest.mark.parametrize("fmt", ["full", "concise", "json", "sarif", "github", "gitlab"])
def test_every_format_to_an_output_file(odd_project, gradlint, fmt):
    result = gradlint("check", "--no-cache", "--output-format", fmt, "-o", "report.out", ".")
    assert result.exit_code == 1, result.stderr
    assert "internal error" not in result.stderr
    _check_document(fmt, (odd_project.root / "report.out").read_bytes().decode("utf-8"))


def test_printable_path_and_path_bytes():
    escaped = os.fsdecode(NAME)
    assert escaped != NAME.decode("latin-1")  # really surrogate-escaped
    assert printable_path(escaped) == SHOWN
    assert printable_path("dir/é.py") == "dir/é.py"
    assert printable_path("x\ud800") == "x\\ud800"
    assert path_bytes(escaped) == NAME


def test_github_step_summary(odd_project, gradlint, monkeypatch):
    summary = odd_project.root / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = gradlint("check", "--no-cache", "--output-format", "github", ".")
    assert result.exit_code == 1, result.stderr
    assert "caf\\\\xe9.py" in summary.read_bytes().decode("utf-8")  # `\` is escaped in markdown cells


def test_a_narrow_terminal_gets_escapes_not_an_internal_error(monkeypatch):
    import io
    import sys

    from gradlint.options import _write

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="latin-1", errors="strict")
    monkeypatch.setattr(sys, "stdout", stream)
    _write("café ☕\n", None)
    stream.flush()
    assert raw.getvalue() == "café \\u2615\n".encode("latin-1")

"""GitHub Actions annotations: checked against a strict parser of the workflow-command grammar
with hostile paths and messages, plus ordering, limits and the step summary."""

from __future__ import annotations

import json
import re

import pytest

from gradlint.findings import RULES, Finding
from gradlint.reporters import ReportContext, renderer

PROPERTY_NAMES = {"file", "line", "endLine", "col", "endColumn", "title"}
PROP_VALUE = re.compile(r"(?:[^%,:\r\n]|%(?:25|0D|0A|3A|2C))*")
DATA = re.compile(r"(?:[^%\r\n]|%(?:25|0D|0A))*")
COMMAND = re.compile(r"::(error|warning|notice)(?: ([^:]*))?::(.*)")


def unescape(text: str) -> str:
    """Inverse of the toolkit's escaping, decoding each escape exactly once."""
    table = {"%25": "%", "%0D": "\r", "%0A": "\n", "%3A": ":", "%2C": ","}
    return re.sub(r"%(?:25|0D|0A|3A|2C)", lambda m: table[m.group(0)], text)


def parse_commands(output: str) -> list:
    """Parse every line as a workflow command, failing on anything the grammar does not allow."""
    assert output == "" or output.endswith("\n")
    commands = []
    for line in output.split("\n")[:-1]:
        match = COMMAND.fullmatch(line)
        assert match, f"not a workflow command: {line!r}"
        kind, props_text, data = match.groups()
        assert DATA.fullmatch(data), f"unescaped data: {data!r}"
        props = {}
        if props_text is not None:
            for item in props_text.split(","):
                key, eq, value = item.partition("=")
                assert eq and key in PROPERTY_NAMES, f"bad property {item!r}"
                assert key not in props, f"duplicate property {key}"
                assert PROP_VALUE.fullmatch(value), f"unescaped property value: {value!r}"
                props[key] = unescape(value)
        for key in ("line", "endLine", "col", "endColumn"):
            if key in props:
                assert props[key].isdigit() and int(props[key]) >= 1
        if "col" in props or "endColumn" in props:
            assert props.get("endLine", props.get("line")) == props.get("line"), "col on a multi-line span"
            assert int(props["endColumn"]) >= int(props["col"])
        if "endLine" in props:
            assert int(props["endLine"]) >= int(props["line"])
        commands.append({"kind": kind, "props": props, "message": unescape(data)})
    return commands


def ctx(tmp_path, sources=None, files=1):
    sources = sources or {}
    return ReportContext(
        cwd=str(tmp_path),
        rules=[RULES[c] for c in ("GL001", "GL002", "GL003")],
        files_checked=files,
        source_of=sources.get,
    )


def finding(code="GL001", path="train.py", line=3, column=5, end_line=None, end_column=20, message="m", severity=None):
    return Finding(
        code=code,
        message=message,
        path=path,
        line=line,
        column=column,
        end_line=line if end_line is None else end_line,
        end_column=end_column,
        severity=severity or RULES[code].severity,
    )


render = renderer("github")

HOSTILE_PATHS = [
    "dir,with,commas/train.py",
    "c:/x::y/train.py",
    "100%25 done/%0A.py",
    "new\nline/carriage\rreturn.py",
    "ünïcødé/训练.py",
    "a=b,title=injected/x.py",
]
HOSTILE_MESSAGES = [
    "optimizer.step() without zero_grad(), see: docs",
    "100% of gradients :: accumulate",
    "line one\nline two\r\nline three\rfour",
    "%0A is not a newline, %25 is not a percent",
    "naïve — 梯度 accumulate ⚠",
    "::error file=evil.py::injected",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
@pytest.mark.parametrize("message", HOSTILE_MESSAGES)
def test_hostile_paths_and_messages_round_trip(tmp_path, monkeypatch, path, message):
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    out = render([finding(path=path, message=message)], ctx(tmp_path))
    [cmd] = parse_commands(out)
    assert cmd["kind"] == "error"
    assert cmd["props"] == {
        "file": path,
        "line": "3",
        "endLine": "3",
        "col": "5",
        "endColumn": "20",
        "title": "gradlint (GL001 missing-zero-grad)",
    }
    assert cmd["message"] == f"{path}:3:5: {message}"


def test_property_order_and_exact_line(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    out = render([finding(message="optimizer.step() without optimizer.zero_grad()")], ctx(tmp_path))
    assert out == (
        "::error file=train.py,line=3,endLine=3,col=5,endColumn=20,"
        "title=gradlint (GL001 missing-zero-grad)::train.py:3:5: optimizer.step() without optimizer.zero_grad()\n"
    )


def test_multiline_span_has_no_columns(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    [cmd] = parse_commands(render([finding(line=3, end_line=5, end_column=2)], ctx(tmp_path)))
    assert cmd["props"]["line"] == "3" and cmd["props"]["endLine"] == "5"
    assert "col" not in cmd["props"] and "endColumn" not in cmd["props"]


def test_severity_mapping_and_worst_first(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    findings = [
        finding(code="GL002", path="a.py", line=1),
        finding(code="GL001", path="b.py", line=9),
        finding(code="GL003", path="a.py", line=7, severity="note"),
        finding(code="GL001", path="a.py", line=2),
        finding(code="GL002", path="a.py", line=0 + 5),
    ]
    cmds = parse_commands(render(findings, ctx(tmp_path)))
    assert [(c["kind"], c["props"]["file"], c["props"]["line"]) for c in cmds] == [
        ("error", "a.py", "2"),
        ("error", "b.py", "9"),
        ("warning", "a.py", "1"),
        ("warning", "a.py", "5"),
        ("notice", "a.py", "7"),
    ]


@pytest.mark.parametrize(
    "errors, warnings, notes, hidden",
    [(10, 10, 10, 0), (12, 3, 0, 2), (11, 11, 0, 2), (11, 0, 10, 2), (0, 0, 11, 2), (25, 0, 0, 15)],
)
def test_overflow_notice_counts_what_github_hides(tmp_path, monkeypatch, errors, warnings, notes, hidden):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    findings = (
        [finding(line=i + 1) for i in range(errors)]
        + [finding(code="GL002", line=i + 1) for i in range(warnings)]
        + [finding(code="GL003", line=i + 1, severity="note") for i in range(notes)]
    )
    cmds = parse_commands(render(findings, ctx(tmp_path)))
    assert len(cmds) == len(findings) + (1 if hidden else 0)  # every finding is still in the log
    if hidden:
        last = cmds[-1]
        assert last["kind"] == "notice" and last["props"] == {}
        assert last["message"].startswith(f"gradlint: {hidden} more finding")
        assert "at most 10 per type per step" in last["message"]
        # our notice must itself be among the notices GitHub shows
        assert sum(1 for c in cmds if c["kind"] == "notice") <= 10 or notes > 9
        if notes:
            assert [c["kind"] for c in cmds].count("notice") - 1 == notes
    else:
        assert not any(c["message"].startswith("gradlint:") for c in cmds)


def test_step_summary_is_appended(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    findings = [
        finding(message="pipe | in message\nand a newline", path="x|y.py"),
        finding(code="GL002", line=8, message="<b>not html</b>"),
        finding(line=12),
    ]
    render(findings, ctx(tmp_path, files=4))
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("# earlier step\n### gradlint")
    assert "3 findings in 4 checked files." in text
    assert "| GL001 | missing-zero-grad | 2 |" in text
    assert "| GL002 | unnecessary-retain-graph | 1 |" in text
    assert "x\\|y.py:3:5" in text and "pipe \\| in message<br>and a newline" in text
    assert "&lt;b&gt;not html&lt;/b&gt;" in text
    # every table row has exactly its columns: escaped pipes do not split cells
    for row in (ln for ln in text.splitlines() if ln.startswith("| ")):
        cells = re.split(r"(?<!\\)\|", row)[1:-1]
        assert len(cells) in (3, 4), row


def test_clean_run_prints_nothing_and_summarises(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert render([], ctx(tmp_path, files=7)) == ""
    assert "No findings in 7 files." in summary.read_text(encoding="utf-8")


def test_unwritable_summary_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "missing-dir" / "summary.md"))
    assert parse_commands(render([finding()], ctx(tmp_path)))


def test_paths_relative_to_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    sub = tmp_path / "project"
    sub.mkdir()
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    [cmd] = parse_commands(render([finding(path="pkg/train.py")], ctx(sub)))
    assert cmd["props"]["file"] == "project/pkg/train.py"
    assert cmd["message"].startswith("pkg/train.py:3:5: ")


def test_notebook_finding_points_at_ipynb_line(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    notebook = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# title\n"]},
            {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": 1, "source": ["import torch\n", "loss.backward()"]},
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    text = json.dumps(notebook, indent=1)
    f = finding(path="nb.ipynb", line=2, column=1, end_column=16).with_(cell=1)
    [cmd] = parse_commands(render([f], ctx(tmp_path, {"nb.ipynb": text})))
    file_line = int(cmd["props"]["line"])
    assert text.split("\n")[file_line - 1].strip() == '"loss.backward()"'
    assert "col" not in cmd["props"]
    assert cmd["message"].startswith("nb.ipynb:cell 1:2:1: ")


# A loop that steps and runs backward every iteration but never clears the gradients.
LOOP_WITHOUT_ZERO_GRAD = """\
import torch

model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in data:
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
"""


# --- end to end through `gradlint check` ------------------------------------------------------


def test_cli_defaults_to_github_under_actions(project, gradlint, monkeypatch):
    project.write("ok.py", "x = 1\n")
    project.write("dir, with: colon/broken 100%.py", "def f(:\n    loss.backward()\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    summary = project.root / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = gradlint("check", "--no-cache")
    assert result.exit_code == 1
    [cmd] = parse_commands(result.stdout)
    assert cmd["kind"] == "error" and cmd["props"]["file"] == "dir, with: colon/broken 100%.py"
    assert cmd["props"]["title"] == "gradlint (GL000 parse-error)"
    assert cmd["message"].startswith("dir, with: colon/broken 100%.py:1:7: cannot parse")
    assert "| GL000 | parse-error | 1 |" in summary.read_text(encoding="utf-8")
    # the environment variable and the option override the automatic choice
    monkeypatch.setenv("GRADLINT_OUTPUT_FORMAT", "json")
    assert json.loads(gradlint("check", "--no-cache").stdout)[0]["code"] == "GL000"
    assert gradlint("check", "--no-cache", "--output-format", "concise").stdout.startswith("dir, with")


def test_cli_many_findings_end_with_the_overflow_notice(project, gradlint, monkeypatch):
    for i in range(12):
        project.write(f"loop_{i:02d}.py", LOOP_WITHOUT_ZERO_GRAD)
    result = gradlint("check", "--no-cache", "--output-format", "github")
    assert result.exit_code == 1
    cmds = parse_commands(result.stdout)
    assert [c["kind"] for c in cmds] == ["error"] * 12 + ["notice"]
    assert [c["props"]["file"] for c in cmds[:12]] == [f"loop_{i:02d}.py" for i in range(12)]
    assert cmds[-1]["message"].startswith("gradlint: 2 more findings were not annotated")

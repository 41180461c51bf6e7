"""GitLab Code Quality report: shape, severities, unique line-free fingerprints, paths."""

from __future__ import annotations

import json

from gradlint.findings import RULES, Finding
from gradlint.reporters import ReportContext, renderer

render = renderer("gitlab")
SEVERITIES = {"info", "minor", "major", "critical", "blocker"}
SOURCE = "import torch\nfor x in data:\n    loss.backward()\n    opt.step()\nfor x in data:\n    loss.backward()\n"


def ctx(cwd, sources=None):
    sources = sources or {}
    return ReportContext(cwd=str(cwd), rules=list(RULES.values()), source_of=sources.get)


def finding(code="GL001", path="train.py", line=3, severity=None, message="m"):
    return Finding(code, message, path, line, 5, line, 20, severity=severity or RULES[code].severity)


def check_report(text: str) -> list:
    """The report is a JSON array of issues with every field GitLab requires."""
    issues = json.loads(text)
    assert isinstance(issues, list)
    for issue in issues:
        assert isinstance(issue["description"], str) and issue["description"]
        assert issue["check_name"].startswith("GL")
        assert issue["severity"] in SEVERITIES
        assert isinstance(issue["location"]["path"], str) and not issue["location"]["path"].startswith("/")
        assert isinstance(issue["location"]["lines"]["begin"], int) and issue["location"]["lines"]["begin"] >= 1
        assert len(issue["fingerprint"]) == 32 and int(issue["fingerprint"], 16) >= 0
    fingerprints = [i["fingerprint"] for i in issues]
    assert len(fingerprints) == len(set(fingerprints)), "GitLab collapses equal fingerprints"
    return issues


def test_clean_run_is_an_empty_array(tmp_path):
    assert json.loads(render([], ctx(tmp_path))) == []


def test_fields_and_severities(tmp_path):
    findings = [
        finding(message="stale gradients, 100%: bad\nreally"),
        finding(code="GL002", line=6),
        finding(code="GL003", line=4, severity="note"),
    ]
    issues = check_report(render(findings, ctx(tmp_path, {"train.py": SOURCE})))
    by_code = {i["check_name"]: i for i in issues}
    assert by_code["GL001"]["severity"] == "major"
    assert by_code["GL002"]["severity"] == "minor"
    assert by_code["GL003"]["severity"] == "info"
    assert by_code["GL001"]["description"] == "GL001 missing-zero-grad: stale gradients, 100%: bad\nreally"
    assert by_code["GL001"]["location"] == {"path": "train.py", "lines": {"begin": 3, "end": 3}}


def test_fingerprints_unique_for_identical_lines_and_stable_under_moves(tmp_path):
    twins = [finding(line=3), finding(line=6)]
    before = check_report(render(twins, ctx(tmp_path, {"train.py": SOURCE})))
    moved = "# header\n\n\n" + SOURCE
    after = check_report(render([finding(line=6), finding(line=9)], ctx(tmp_path, {"train.py": moved})))
    assert [i["fingerprint"] for i in before] == [i["fingerprint"] for i in after]
    # the same line in another file or for another rule is another issue
    other = check_report(render([finding(path="other.py"), finding(code="GL003")], ctx(tmp_path, {"train.py": SOURCE, "other.py": SOURCE})))
    assert not {i["fingerprint"] for i in other} & {i["fingerprint"] for i in before}


def test_paths_relative_to_ci_project_dir(tmp_path, monkeypatch):
    project = tmp_path / "repo"
    (project / "sub").mkdir(parents=True)
    monkeypatch.setenv("CI_PROJECT_DIR", str(project))
    issues = check_report(
        render([finding(path=str(project / "pkg" / "a.py")), finding(path="b.py")], ctx(project / "sub"))
    )
    assert sorted(i["location"]["path"] for i in issues) == ["pkg/a.py", "sub/b.py"]


def test_notebook_issue_names_the_cell(tmp_path):
    notebook = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "source": ["x = 1\n", "loss.backward()"]}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    text = json.dumps(notebook, indent=1)
    f = finding(path="nb.ipynb", line=2).with_(cell=1)
    [issue] = check_report(render([f], ctx(tmp_path, {"nb.ipynb": text})))
    assert issue["description"].endswith("(cell 1, line 2)")
    assert text.split("\n")[issue["location"]["lines"]["begin"] - 1].strip() == '"loss.backward()"'


def test_cli_writes_code_quality_report(project, gradlint, monkeypatch):
    monkeypatch.setenv("CI_PROJECT_DIR", str(project.root))
    project.write("a/broken.py", "def f(:\n    loss.backward()\n")
    project.write("a/twin.py", "def f(:\n    loss.backward()\n")
    result = gradlint("check", "--no-cache", "--output-format", "gitlab", "-o", "gl-code-quality-report.json")
    assert result.exit_code == 1
    issues = check_report((project.root / "gl-code-quality-report.json").read_text(encoding="utf-8"))
    assert sorted(i["location"]["path"] for i in issues) == ["a/broken.py", "a/twin.py"]
    assert {i["check_name"] for i in issues} == {"GL000"} and {i["severity"] for i in issues} == {"major"}

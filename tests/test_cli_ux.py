"""What a person at a terminal meets: fix previews and tiers, colour, severity, help lines, rule
names as selectors, exclude flags (issue 15)."""

from __future__ import annotations

import json

import pytest

from cli_samples import CLEAN_LOOP, LOOP_WITHOUT_ZERO_GRAD
from gradlint.cli import fixable
from gradlint.findings import Edit, Finding, Fix
from gradlint.options import summary_line, use_colour
from gradlint.reporters import ReportContext
from gradlint.reporters.text import render_concise, render_full

pytestmark = pytest.mark.usefixtures("clean_env")

RETAIN = CLEAN_LOOP.replace("loss.backward()", "loss.backward(retain_graph=True)")


def test_diff_previews_and_writes_nothing(project, gradlint):
    path = project.write("train.py", RETAIN)
    before = path.read_bytes()
    result = gradlint("check", "--diff", "train.py")
    assert result.exit_code == 1
    assert path.read_bytes() == before
    assert "--- a/train.py" in result.stdout and "+++ b/train.py" in result.stdout
    assert "-    loss.backward(retain_graph=True)" in result.stdout
    assert "+    loss.backward()" in result.stdout
    assert "Would fix 1 finding in 1 file." in result.stderr
    # --diff wins over --fix: still a preview
    result = gradlint("check", "--diff", "--fix", "train.py")
    assert result.exit_code == 1 and path.read_bytes() == before


def test_diff_on_clean_or_unfixable_code_exits_0(project, gradlint):
    project.write("clean.py", CLEAN_LOOP)
    project.write("buggy.py", LOOP_WITHOUT_ZERO_GRAD)  # GL001 has no safe fix
    result = gradlint("check", "--diff", ".")
    assert result.exit_code == 0 and result.stdout == ""


def test_diff_from_stdin(project, gradlint):
    result = gradlint("check", "--diff", "-", "--stdin-filename", "train.py", input=RETAIN)
    assert result.exit_code == 1 and "+    loss.backward()" in result.stdout


def test_show_fixes_and_exit_non_zero_on_fix(project, gradlint):
    path = project.write("train.py", RETAIN)
    result = gradlint("check", "--show-fixes", "train.py")
    assert "Fixes available:" in result.stderr and "GL002" in result.stderr
    result = gradlint("check", "--fix", "--show-fixes", "train.py")
    assert result.exit_code == 0
    assert "Fixes applied:" in result.stderr and "train.py:" in result.stderr
    assert "retain_graph" not in path.read_text()
    path.write_text(RETAIN)
    result = gradlint("check", "--fix", "--exit-non-zero-on-fix", "train.py")
    assert result.exit_code == 1 and "retain_graph" not in path.read_text()


def _finding(applicability: str, code: str = "GL002") -> Finding:
    return Finding(code=code, message="m", path="t.py", line=1, column=1, end_line=1, end_column=2,
                   severity="warning", fix=Fix("drop it", (Edit(0, 1, ""),), applicability))


def test_fix_tiers():
    safe, unsafe = _finding("safe"), _finding("unsafe")
    assert fixable(safe, unsafe=False) and fixable(safe, unsafe=True)
    assert not fixable(unsafe, unsafe=False) and fixable(unsafe, unsafe=True)
    text = summary_line([safe, unsafe], files_checked=3)
    assert "1 fixable with `--fix`." in text and "1 more fixable with `--unsafe-fixes --fix`" in text
    assert "2 fixable with `--fix` --unsafe-fixes." in summary_line([safe, unsafe], 3, unsafe_fixes=True)
    assert "fixable" not in summary_line([_finding("safe").with_(fix=None)], 1)


def test_a_finding_the_run_refuted_is_counted_as_such_and_offered_no_fix():
    refuted, confirmed = _finding("unsafe").with_(runtime="refuted"), _finding("safe").with_(runtime="confirmed")
    text = summary_line([refuted], files_checked=1)
    assert "Found 1 finding" in text and "1 of them refuted by the run" in text and "fixable" not in text
    text = summary_line([refuted, confirmed], files_checked=1)
    assert "1 of them refuted" in text and "1 fixable with `--fix`." in text and "more fixable" not in text
    assert "refuted" not in summary_line([confirmed], files_checked=1)


def test_full_output_shows_severity_help_and_fix_tier():
    finding = _finding("unsafe").with_(help="call `opt.zero_grad()` after the step")
    ctx = ReportContext(cwd="/", rules=[], source_of=lambda path: "x = 1\n")
    text = render_full([finding], ctx)
    assert text.splitlines()[0] == "t.py:1:1: GL002 [unnecessary-retain-graph] warning: m"
    assert "  = help: call `opt.zero_grad()` after the step" in text
    assert "  = fix: drop it (unsafe: --unsafe-fixes --fix)" in text
    assert "\033[" not in text
    coloured = render_full([finding], ReportContext(cwd="/", rules=[], source_of=lambda p: "x = 1\n",
                                                    extra={"colour": True}))
    assert "\033[1;33mwarning\033[0m" in coloured
    assert render_concise([finding], ctx) == "t.py:1:1: GL002 [unnecessary-retain-graph] warning: m\n"


def test_colour_follows_no_color_force_color_and_tty(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    assert use_colour(Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Tty())
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert use_colour(object())
    monkeypatch.delenv("FORCE_COLOR")
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not use_colour(Tty())


def test_force_color_reaches_the_report_but_not_files(project, gradlint, monkeypatch):
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert "\033[" in gradlint("check", "train.py").stdout
    gradlint("check", "train.py", "-o", "report.txt")
    assert "\033[" not in (project.root / "report.txt").read_text()
    assert "\033[" not in gradlint("check", "train.py", "--output-format", "json").stdout


def test_rule_names_work_wherever_codes_do(project, gradlint):
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    assert gradlint("check", "--ignore", "missing-zero-grad", "train.py").exit_code == 0
    assert gradlint("check", "--select", "missing-zero-grad", "train.py").exit_code == 1
    project.write("pyproject.toml", '[tool.gradlint]\nignore = ["missing-zero-grad"]\n')
    assert gradlint("check", "train.py").exit_code == 0
    project.write("pyproject.toml", '[tool.gradlint]\nper-file-ignores = {"train.py" = ["missing-zero-grad"]}\n')
    assert gradlint("check", "train.py").exit_code == 0
    bad = gradlint("check", "--ignore", "missing-zerograd", "train.py")
    assert bad.exit_code == 2 and "unknown rule code" in bad.stderr


def test_exclude_flags(project, gradlint):
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("legacy/old.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("pyproject.toml", '[tool.gradlint]\nextend-exclude = ["legacy/"]\n')
    paths = lambda result: {f["path"] for f in json.loads(result.stdout)}  # noqa: E731
    assert paths(gradlint("check", ".", "--output-format", "json")) == {"train.py"}
    # --extend-exclude adds to the configured list
    result = gradlint("check", ".", "--output-format", "json", "--extend-exclude", "train.py")
    assert result.exit_code == 0 and paths(result) == set()
    # --exclude replaces the configured `exclude` (the defaults), extend-exclude still applies
    result = gradlint("check", ".", "--output-format", "json", "--exclude", "nothing-here")
    assert paths(result) == {"train.py"}


def test_rules_table_shows_severity_and_fix_tier(gradlint):
    out = gradlint("rules").stdout
    assert out.splitlines()[0].split()[:5] == ["code", "name", "severity", "fix", "default"]
    gl002 = next(line for line in out.splitlines() if line.startswith("GL002"))
    assert gl002.split()[2:4] == ["warning", "safe"]

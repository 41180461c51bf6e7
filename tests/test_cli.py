"""The command line end to end: every check option, exit status and bad input (CliRunner), plus
real `python -m gradlint` subprocesses to prove no traceback ever reaches the user."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from cli_samples import CLEAN_LOOP, LOOP_WITHOUT_ZERO_GRAD
from gradlint import __version__
from gradlint.findings import RULES
from harness import syntax_error_at

pytestmark = pytest.mark.usefixtures("clean_env")


def as_json(result):
    return json.loads(result.stdout)


# --- basics -----------------------------------------------------------------------------------


def test_version(gradlint):
    result = gradlint("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"gradlint {__version__}"


def test_rules_table_lists_every_rule(gradlint):
    result = gradlint("rules")
    assert result.exit_code == 0
    for code, info in RULES.items():
        line = next(ln for ln in result.stdout.splitlines() if ln.startswith(code))
        assert info.name in line and info.severity in line and (info.fix or "-") in line.split()
        assert ("on" if info.default_on else "off") in line
    rows = json.loads(gradlint("rules", "--output-format", "json").stdout)
    assert {row["code"] for row in rows} == set(RULES)


def test_explain_prints_the_rule_page(gradlint):
    result = gradlint("explain", "GL001")
    assert result.exit_code == 0
    assert "## What it does" in result.stdout or "What it does" in result.stdout
    assert gradlint("explain", "missing-zero-grad").stdout == result.stdout
    assert gradlint("explain", "gl001").stdout == result.stdout


def test_explain_unknown_code_exits_2(gradlint):
    result = gradlint("explain", "GL999")
    assert result.exit_code == 2
    assert result.stderr.strip() == "gradlint: error: unknown rule 'GL999' (see `gradlint rules`)"


# --- exit status and findings ------------------------------------------------------------------


def test_clean_project_exits_0(project, gradlint):
    project.write("train.py", CLEAN_LOOP)
    result = gradlint("check", "--no-cache")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr.strip() == "All checks passed (1 file)."


def test_findings_exit_1_with_full_report(project, gradlint):
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    result = gradlint("check", "--no-cache")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("train.py:7:5: GL001 [missing-zero-grad] ")
    assert lines[2] == "7 |     loss.backward()"
    assert lines[3] == "  |     ^^^^^^^^^^^^^^^"
    assert result.stderr.strip() == ("Found 1 finding in 1 of 1 file. 1 more fixable with `--unsafe-fixes --fix` "
                                     "(preview with `--diff --unsafe-fixes`).")


def test_unparsable_and_undecodable_files_are_gl000_and_others_still_linted(project, gradlint):
    project.write("broken.py", "def f(:\n    loss.backward()\n")
    project.write("latin.py", b"x = '\xe9'\n")
    project.write("cookie.py", b"# -*- coding: no-such-codec -*-\nx = 1\n")
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    result = gradlint("check", "--no-cache", "--output-format", "json")
    assert result.exit_code == 1
    found = {(f["path"], f["code"]) for f in as_json(result)}
    assert found == {("broken.py", "GL000"), ("latin.py", "GL000"), ("cookie.py", "GL000"), ("train.py", "GL001")}
    by_path = {f["path"]: f for f in as_json(result)}
    assert by_path["broken.py"]["line"] == 1 and by_path["broken.py"]["column"] == 7
    assert "invalid byte" in by_path["latin.py"]["message"]
    assert "\n" not in by_path["broken.py"]["message"]


def test_pep263_cookie_and_bom_are_honoured(project, gradlint):
    project.write("latin.py", b"# -*- coding: latin-1 -*-\nname = '\xe9'\n")
    project.write("bom.py", b"\xef\xbb\xbfx = 1\n")
    assert gradlint("check", "--no-cache").exit_code == 0


def test_gl000_only_for_files_the_prefilter_lets_through(project, gradlint):
    # util.py names no word any rule needs: it cannot hold a finding, so it is not parsed just to
    # report its syntax error (ruff and flake8 do that); a word even in a comment lets a file through
    project.write("util.py", "def helper(:\n    return 1\n")
    result = gradlint("check", "--no-cache", "--output-format", "concise")
    assert result.exit_code == 0 and "GL000" not in result.stdout
    project.write("notes.py", "# calls loss.backward() later\ndef helper(:\n    return 1\n")
    result = gradlint("check", "--no-cache", "--output-format", "concise")
    assert result.exit_code == 1
    assert result.stdout.startswith("notes.py:2:12: GL000 [parse-error] error: cannot parse:")
    assert "util.py" not in result.stdout
    # GL000 alone selected: every file is checked for syntax errors (nothing to prefilter against)
    result = gradlint("check", "--no-cache", "--output-format", "concise", "--select", "GL000")
    assert result.exit_code == 1 and "util.py:1:12: GL000" in result.stdout and "notes.py:2:12: GL000" in result.stdout


def test_json_findings_have_the_documented_fields(project, gradlint):
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    (finding,) = as_json(gradlint("check", "--no-cache", "--output-format", "json"))
    assert {"code", "name", "message", "severity", "path", "line", "column", "end_line", "end_column"} <= set(finding)
    assert (finding["code"], finding["path"], finding["line"], finding["column"]) == ("GL001", "train.py", 7, 5)
    assert finding["end_column"] == 20


def test_paths_outside_cwd_are_shown_as_given(project, gradlint, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "t.py").write_text(LOOP_WITHOUT_ZERO_GRAD)
    (finding,) = as_json(gradlint("check", "--no-cache", "--output-format", "json", str(elsewhere / "t.py")))
    assert finding["path"] == str(elsewhere / "t.py")
    project.write("sub/t.py", LOOP_WITHOUT_ZERO_GRAD)
    (finding,) = as_json(gradlint("check", "--no-cache", "--output-format", "json", "./sub/../sub/t.py"))
    assert finding["path"] == "sub/t.py"


def test_concise_and_output_file(project, gradlint):
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    result = gradlint("check", "--no-cache", "--output-format", "concise", "-o", "report.txt")
    assert result.exit_code == 1 and result.stdout == ""
    text = (project.root / "report.txt").read_text()
    assert len(text.splitlines()) == 1 and text.startswith("train.py:7:5: GL001 [missing-zero-grad]")


def test_output_to_unwritable_place_exits_2(project, gradlint):
    project.write("train.py", CLEAN_LOOP)
    result = gradlint("check", "--no-cache", "-o", str(project.root / "no" / "such" / "dir" / "r.txt"))
    assert result.exit_code == 2 and result.stderr.startswith("gradlint: error: cannot write report")


def test_exit_zero(project, gradlint):
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    result = gradlint("check", "--no-cache", "--exit-zero")
    assert result.exit_code == 0 and "GL001" in result.stdout


def test_statistics(project, gradlint):
    project.write("a.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("b.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("c.py", "x = (\nloss.backward()\n")
    result = gradlint("check", "--no-cache", "--statistics")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["2\tGL001\tmissing-zero-grad", "1\tGL000\tparse-error"]
    rows = json.loads(gradlint("check", "--no-cache", "--statistics", "--output-format", "json").stdout)
    assert rows[0] == {"code": "GL001", "name": "missing-zero-grad", "count": 2}


def test_quiet_drops_the_summary(project, gradlint):
    project.write("train.py", CLEAN_LOOP)
    result = gradlint("check", "--no-cache", "-q")
    assert result.exit_code == 0 and result.stderr == ""


# --- selection ----------------------------------------------------------------------------------


def test_select_ignore_extend_select(project, gradlint):
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    assert gradlint("check", "--no-cache", "--ignore", "GL001").exit_code == 0
    assert gradlint("check", "--no-cache", "--select", "GL002,GL003").exit_code == 0
    assert gradlint("check", "--no-cache", "--select", "GL003", "--select", "GL001").exit_code == 1
    assert gradlint("check", "--no-cache", "--select", "ALL").exit_code == 1
    assert gradlint("check", "--no-cache", "--select", "GL00").exit_code == 1


def test_unknown_code_in_select_exits_2_with_one_line(project, gradlint):
    project.write("train.py", CLEAN_LOOP)
    result = gradlint("check", "--select", "GL042")
    assert result.exit_code == 2
    assert result.stderr == "gradlint: error: --select: unknown rule code or prefix 'GL042' (see `gradlint rules`)\n"


def test_config_errors_exit_2_with_one_line(project, gradlint):
    project.write("pyproject.toml", "[tool.gradlint]\nselekt = ['GL001']\n")
    project.write("train.py", CLEAN_LOOP)
    result = gradlint("check")
    assert result.exit_code == 2
    assert result.stderr == "gradlint: error: pyproject.toml: unknown key 'selekt'\n"
    assert gradlint("check", "--isolated", "--no-cache").exit_code == 0


def test_config_file_option_and_missing_config(project, gradlint):
    project.write("ci.toml", "ignore = ['GL001']\n")
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    assert gradlint("check", "--no-cache", "--config", "ci.toml").exit_code == 0
    result = gradlint("check", "--config", "nope.toml")
    assert result.exit_code == 2 and result.stderr == "gradlint: error: config file not found: nope.toml\n"


def test_per_file_ignores(project, gradlint):
    project.write("pyproject.toml", "[tool.gradlint]\nper-file-ignores = {'experiments/**' = ['GL001']}\n")
    project.write("experiments/try.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    paths = [f["path"] for f in as_json(gradlint("check", "--no-cache", "--output-format", "json"))]
    assert paths == ["train.py"]


def test_noqa_forms_end_to_end(project, gradlint):
    project.write("inline.py", LOOP_WITHOUT_ZERO_GRAD.replace("loss.backward()", "loss.backward()  # noqa: GL001"))
    project.write("blanket.py", LOOP_WITHOUT_ZERO_GRAD.replace("loss.backward()", "loss.backward()  # NOQA"))
    project.write("filewide.py", "# gradlint: noqa: GL001\n" + LOOP_WITHOUT_ZERO_GRAD)
    project.write("other.py", LOOP_WITHOUT_ZERO_GRAD.replace("loss.backward()", "loss.backward()  # noqa: GL003"))
    found = as_json(gradlint("check", "--no-cache", "--output-format", "json"))
    assert [(f["path"], f["code"]) for f in found] == [("other.py", "GL001")]
    found = as_json(gradlint("check", "--no-cache", "--output-format", "json", "--extend-select", "GL100"))
    assert [(f["path"], f["code"]) for f in found] == [("other.py", "GL001"), ("other.py", "GL100")]


def test_unused_noqa_in_a_file_without_training_code(project, gradlint):
    project.write("util.py", "x = 1  # noqa: GL002\n")
    assert gradlint("check", "--no-cache").exit_code == 0
    found = as_json(gradlint("check", "--no-cache", "--output-format", "json", "--extend-select", "GL100"))
    assert [(f["code"], f["line"], f["column"]) for f in found] == [("GL100", 1, 8)]


# --- files ------------------------------------------------------------------------------------------


def test_nonexistent_path_exits_2(project, gradlint):
    result = gradlint("check", "missing.py")
    assert result.exit_code == 2
    assert result.stderr == "gradlint: error: missing.py: no such file or directory\n"


def test_zero_files_exit_0_saying_so(project, gradlint):
    project.write("README.md", "hello")
    result = gradlint("check")
    nothing = "gradlint: warning: No Python files found\n"  # on stderr, as ruff does (issue 8)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", nothing)
    project.write("build/x.py", LOOP_WITHOUT_ZERO_GRAD)
    result = gradlint("check", "--force-exclude", "build/x.py")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", nothing)
    # machine-readable formats still get a valid (empty) document
    assert gradlint("check", "--force-exclude", "build/x.py", "--output-format", "json").stdout == "[]\n"


def test_force_exclude_and_explicit_files(project, gradlint):
    project.write("pyproject.toml", "[tool.gradlint]\nextend-exclude = ['legacy/']\n")
    project.write("legacy/old.py", LOOP_WITHOUT_ZERO_GRAD)
    assert gradlint("check", "--no-cache").exit_code == 0
    assert gradlint("check", "--no-cache", "legacy/old.py").exit_code == 1
    assert gradlint("check", "--no-cache", "--force-exclude", "legacy/old.py").exit_code == 0


def test_gitignored_files_are_skipped(project, gradlint):
    project.write(".gitignore", "scratch/\n")
    project.write("scratch/t.py", LOOP_WITHOUT_ZERO_GRAD)
    assert gradlint("check", "--no-cache").exit_code == 0


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loop_does_not_hang(project, gradlint):
    project.write("pkg/t.py", LOOP_WITHOUT_ZERO_GRAD)
    os.symlink(project.root, project.root / "pkg" / "loop")
    found = as_json(gradlint("check", "--no-cache", "--output-format", "json"))
    assert [f["path"] for f in found] == ["pkg/t.py"]


# --- stdin -------------------------------------------------------------------------------------------


def test_stdin(project, gradlint):
    result = gradlint("check", "-", "--stdin-filename", "train.py", "--output-format", "concise",
                      input=LOOP_WITHOUT_ZERO_GRAD)
    assert result.exit_code == 1
    assert result.stdout.startswith("train.py:7:5: GL001")
    result = gradlint("check", "-", input=LOOP_WITHOUT_ZERO_GRAD)
    assert result.stdout.startswith("-:7:5: GL001") and "loss.backward()" in result.stdout
    assert gradlint("check", "-", input=CLEAN_LOOP).exit_code == 0


def test_stdin_honours_per_file_ignores_and_force_exclude(project, gradlint):
    project.write("pyproject.toml", "[tool.gradlint]\nper-file-ignores = {'nb/*' = ['GL001']}\n"
                                    "extend-exclude = ['gen/']\n")
    assert gradlint("check", "-", "--stdin-filename", "nb/t.py", input=LOOP_WITHOUT_ZERO_GRAD).exit_code == 0
    args = ["check", "-", "--stdin-filename", "gen/t.py"]
    assert gradlint(*args, input=LOOP_WITHOUT_ZERO_GRAD).exit_code == 1
    assert gradlint(*args, "--force-exclude", input=LOOP_WITHOUT_ZERO_GRAD).exit_code == 0


def test_stdin_cannot_mix_with_paths(project, gradlint):
    project.write("a.py")
    result = gradlint("check", "-", "a.py", input="")
    assert result.exit_code == 2 and "cannot be combined" in result.stderr


def test_stdin_parse_error(project, gradlint):
    result = gradlint("check", "-", "--stdin-filename", "x.py", "--output-format", "concise", input="x = (\nloss.backward()\n")
    assert result.exit_code == 1 and result.stdout.startswith("x.py:" + syntax_error_at("x = (\nloss.backward()\n"))
    assert " GL000 [parse-error] error: cannot parse: " in result.stdout


# --- formats and environment ---------------------------------------------------------------------


def test_github_actions_selects_github_format(project, gradlint, monkeypatch):
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert gradlint("check", "--no-cache").stdout.startswith("::error ")
    assert gradlint("check", "--no-cache", "--output-format", "concise").stdout.startswith("train.py:7:5")
    monkeypatch.setenv("GRADLINT_OUTPUT_FORMAT", "json")
    assert as_json(gradlint("check", "--no-cache"))[0]["code"] == "GL001"


def test_bad_format_env_exits_2(project, gradlint, monkeypatch):
    project.write("train.py", CLEAN_LOOP)
    monkeypatch.setenv("GRADLINT_OUTPUT_FORMAT", "yaml")
    result = gradlint("check", "--no-cache")
    assert result.exit_code == 2 and result.stderr.startswith("gradlint: error: GRADLINT_OUTPUT_FORMAT")


def test_bad_option_values_exit_2(project, gradlint):
    assert gradlint("check", "--output-format", "xml").exit_code == 2
    assert gradlint("check", "--jobs", "-3").exit_code == 2
    assert gradlint("check", "--no-such-option").exit_code == 2


# --- parallelism, internal errors ------------------------------------------------------------------


def test_parallel_output_equals_serial(project, gradlint):
    for i in range(12):
        project.write(f"pkg/m{i:02}.py", LOOP_WITHOUT_ZERO_GRAD if i % 3 else CLEAN_LOOP)
    project.write("pkg/bad.py", "def (\n    loss.backward()\n")
    serial = gradlint("check", "--no-cache", "-j", "1", "--output-format", "json")
    parallel = gradlint("check", "--no-cache", "-j", "2", "--output-format", "json")
    assert serial.exit_code == parallel.exit_code == 1
    assert serial.stdout == parallel.stdout
    assert len(as_json(serial)) == 9


def test_internal_error_names_the_file_and_exits_2(project, gradlint, monkeypatch):
    import gradlint.analysis as analysis

    real = analysis.analyze

    def flaky(source, path, *args, **kwargs):
        if path.endswith("boom.py"):
            raise KeyError("surprise")
        return real(source, path, *args, **kwargs)

    monkeypatch.setattr(analysis, "analyze", flaky)
    project.write("boom.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    result = gradlint("check", "--no-cache", "-j", "1", "--output-format", "concise")
    assert result.exit_code == 2
    assert result.stdout.startswith("train.py:7:5: GL001")
    assert "gradlint: error: internal error while checking boom.py: KeyError: 'surprise'" in result.stderr
    assert "Traceback" not in result.output


# --- fixes -------------------------------------------------------------------------------------------


def _fixable(path: str, start: int, end: int, text: str):
    from gradlint.findings import Edit, Finding, Fix

    return Finding(code="GL002", message="m", path=path, line=1, column=1, end_line=1, end_column=2,
                   fix=Fix("rewrite", (Edit(start, end, text),)))


def test_fix_file_is_atomic_and_keeps_mode_and_encoding(project):
    from gradlint.fixes import fix_file

    path = project.write("t.py", b"# -*- coding: latin-1 -*-\nx = '\xe9'  \r\ny = 1\r\n")
    os.chmod(path, 0o751)
    text = path.read_bytes().decode("latin-1")
    start = text.index("y = 1")
    assert fix_file(str(path), [_fixable("t.py", start, start + 5, "y = 2")]) == 1
    assert path.read_bytes() == b"# -*- coding: latin-1 -*-\nx = '\xe9'  \r\ny = 2\r\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o751
    assert [p.name for p in project.root.iterdir()] == ["t.py"]  # no temp file left behind


def test_fix_refuses_to_write_unparsable_code(project):
    from gradlint.fixes import fix_file

    path = project.write("t.py", "x = 1\n")
    with pytest.raises(ValueError, match="would not parse"):
        fix_file(str(path), [_fixable("t.py", 0, 5, "x = (")])
    assert path.read_text() == "x = 1\n"


def test_apply_fixes_skips_overlaps_and_unfixable():
    from gradlint.fixes import apply_fixes
    from gradlint.findings import Edit, Finding, Fix

    first = _fixable("t.py", 0, 3, "AAA")
    overlapping = _fixable("t.py", 2, 5, "BBB")
    unfixable = Finding(code="GL000", message="m", path="t.py", line=1, column=1, end_line=1, end_column=2,
                        fix=Fix("no", (Edit(6, 7, "Z"),)))
    text, count = apply_fixes("abcdefgh", [first, overlapping, unfixable])
    assert (text, count) == ("AAAdefgh", 1)


def test_fix_option_applies_fixes_and_reports_the_rest(project, gradlint, monkeypatch):
    import gradlint.engine as engine

    real = engine.analyse_text

    def with_fix(text, path, settings, enabled, data=None):
        found = list(real(text, path, settings, enabled, data))
        if "retain_graph=True" in text:
            start = text.index(", retain_graph=True")
            found.append(_fixable(path, start, start + len(", retain_graph=True"), "").with_(line=7, column=5))
        return found

    monkeypatch.setattr(engine, "analyse_text", with_fix)
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD.replace("loss.backward()", "loss.backward(x, retain_graph=True)"))
    result = gradlint("check", "--no-cache", "-j", "1", "--fix", "--output-format", "concise")
    assert "retain_graph" not in (project.root / "train.py").read_text()
    assert result.exit_code == 1  # GL001 remains
    assert [ln.split(" ")[1] for ln in result.stdout.splitlines()] == ["GL001"]
    assert "Fixed 1 finding" not in result.stderr  # summary only for the full format
    result = gradlint("check", "--no-cache", "-j", "1", "--fix")
    assert "Found 1 finding" in result.stderr


# --- real processes: no traceback, ever --------------------------------------------------------------


def run_module(*args, cwd, input=None):
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "GRADLINT_OUTPUT_FORMAT")}
    return subprocess.run([sys.executable, "-m", "gradlint", *args], cwd=cwd, input=input, capture_output=True,
                          text=True, env=env, timeout=120)


def test_subprocess_mixed_bad_input(project):
    project.write("broken.py", "class (:\n    loss.backward()\n")
    project.write("binary.py", b"\x00\x01\x02\xff\xfe")
    project.write("nul.py", "loss.backward()\x00\n")
    project.write("deep.py", "x = " + "(" * 300 + ")" * 300 + "\nx.backward()\n")
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    proc = run_module("check", "--no-cache", "--output-format", "json", cwd=project.root)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    codes = {(f["path"], f["code"]) for f in json.loads(proc.stdout)}
    assert ("train.py", "GL001") in codes and ("broken.py", "GL000") in codes and ("binary.py", "GL000") in codes
    assert ("nul.py", "GL000") in codes


def test_subprocess_usage_and_config_errors(project):
    project.write("pyproject.toml", "[tool.gradlint]\nselect = 'GL001'\n")
    proc = run_module("check", cwd=project.root)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    proc = run_module("check", "--isolated", "missing_dir", cwd=project.root)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = run_module("--version", cwd=project.root)
    assert proc.returncode == 0 and proc.stdout.strip() == f"gradlint {__version__}"


# --- prefilter ----------------------------------------------------------------------------------------


def _spy_analyze(monkeypatch):
    import gradlint.analysis as analysis

    real = analysis.analyze
    seen = []

    def spy(source, path, *args, **kwargs):
        seen.append(path)
        return real(source, path, *args, **kwargs)

    monkeypatch.setattr(analysis, "analyze", spy)
    return seen


def test_prefilter_skips_files_that_cannot_hold_a_finding(project, gradlint, monkeypatch):
    seen = _spy_analyze(monkeypatch)
    project.write("util.py", "def add(a, b):\n    return a + b\n")
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("bad_util.py", "def add(a, b:\n")  # no rule's word: not parsed, so no GL000 either
    project.write("bad_train.py", "def step(a, b:\n    loss.backward()\n")  # a word: parsed, GL000
    result = gradlint("check", "--no-cache", "-j", "1", "--output-format", "concise")
    assert seen == ["train.py"]  # bad_train.py: CPython rejects it, so LibCST never sees it
    bad_at = syntax_error_at("def step(a, b:\n    loss.backward()\n")
    assert [line.split(" ")[:2] for line in result.stdout.splitlines()] == [[f"bad_train.py:{bad_at}", "GL000"],
                                                                           ["train.py:7:5:", "GL001"]]


def test_prefilter_follows_imported_project_helpers_and_configured_names(project, gradlint, monkeypatch):
    seen = _spy_analyze(monkeypatch)
    project.write("pkg/__init__.py", "from .helpers import update\n")
    project.write("pkg/helpers.py", "def update(model, opt, x):\n    model(x).sum().backward()\n    opt.step()\n")
    project.write("loop.py", "from pkg import update\nfor x in data:\n    update(model, opt, x)\n")
    project.write("plain.py", "from os import path\nfor x in data:\n    print(path, x)\n")
    project.write("custom.py", "for x in data:\n    apply_my_loss(x)\n")
    gradlint("check", "--no-cache", "-j", "1")
    assert "loop.py" in seen and "plain.py" not in seen and "custom.py" not in seen
    seen.clear()
    gradlint("check", "--no-cache", "-j", "1", "--isolated", "custom.py")
    assert seen == []
    project.write("pyproject.toml", "[tool.gradlint]\nbackward-functions = ['apply_my_loss']\n")
    gradlint("check", "--no-cache", "-j", "1", "custom.py")
    assert seen == ["custom.py"]


def test_stdin_fix_prints_the_fixed_source_and_reports_on_stderr(project, gradlint, monkeypatch):
    import gradlint.engine as engine

    real = engine.analyse_text

    def with_fix(text, path, settings, enabled, data=None):
        found = list(real(text, path, settings, enabled, data))
        if "retain_graph=True" in text:
            start = text.index(", retain_graph=True")
            found.append(_fixable(path, start, start + len(", retain_graph=True"), "").with_(line=7, column=5))
        return found

    monkeypatch.setattr(engine, "analyse_text", with_fix)
    source = LOOP_WITHOUT_ZERO_GRAD.replace("loss.backward()", "loss.backward(x, retain_graph=True)")
    result = gradlint("check", "-", "--fix", "--output-format", "concise", input=source)
    assert result.stdout == source.replace(", retain_graph=True", "")
    assert result.stderr.startswith("-:7:5: GL001") and result.exit_code == 1


def test_cache_dir_from_the_environment(project, gradlint, monkeypatch):
    project.write("train.py", CLEAN_LOOP)
    monkeypatch.setenv("GRADLINT_CACHE_DIR", str(project.root / "envcache"))
    assert gradlint("check").exit_code == 0
    assert (project.root / "envcache" / ".gitignore").exists() and not (project.root / ".gradlint_cache").exists()


def test_nested_project_configs(project, gradlint):
    project.write("a/pyproject.toml", "[tool.gradlint]\nignore = ['GL001']\nextend-exclude = ['skip/']\n")
    project.write("a/train.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("a/skip/t.py", "x = (\n")
    project.write("b/train.py", LOOP_WITHOUT_ZERO_GRAD)
    found = as_json(gradlint("check", "--no-cache", "--output-format", "json", "a", "b"))
    assert [(f["path"], f["code"]) for f in found] == [("b/train.py", "GL001")]
    project.write("c/pyproject.toml", "[tool.gradlint]\nbogus = 1\n")
    project.write("c/t.py", CLEAN_LOOP)
    result = gradlint("check", "--no-cache")
    assert result.exit_code == 2 and result.stderr == "gradlint: error: c/pyproject.toml: unknown key 'bogus'\n"


def test_add_noqa_silences_every_finding_and_exits_0(project, gradlint):
    path = project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("broken.py", "x = (\nloss.backward()\n")
    result = gradlint("check", "--no-cache", "--add-noqa")
    assert result.exit_code == 0 and "Added 1 noqa directive." in result.stderr
    assert "loss.backward()  # noqa: GL001" in path.read_text()
    assert gradlint("check", "--no-cache", "train.py").exit_code == 0
    assert gradlint("check", "--no-cache", "broken.py").exit_code == 1  # GL000 is never annotated
    assert gradlint("check", "--add-noqa", "--fix").exit_code == 2

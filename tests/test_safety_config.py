"""Hostile configuration, ignore files and cache entries: a config error is exit 2 with one line,
anything else degrades (an invalid .gitignore line is dropped as git drops it, a bad cache entry
is a miss, a cache dir that is a file means no cache), never an internal error."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from cli_samples import LOOP_WITHOUT_ZERO_GRAD
from gradlint.cache import valid_entry, valid_finding
from gradlint.config import load_settings
from gradlint.engine import lint_files
from gradlint.patterns import compile_lines, invalid_pattern

CORPUS = os.path.join(os.path.dirname(__file__), "corpus")
BAD_PATTERNS = ["!", "foo\\", "[z-a].py"]


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradlint: error: ")
    assert "internal error" not in lines[0] and "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("value", ['[""]', '["  "]', '["GL001", ""]', '[","]'])
def test_empty_selector_is_a_config_error(project, gradlint, value):
    project.write("pyproject.toml", f"[tool.gradlint]\nselect = {value}\n")
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    assert "empty rule selector" in _one_line_error(gradlint("check", "."))


def test_empty_selector_on_the_command_line_too(project, gradlint):
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    assert "empty rule selector" in _one_line_error(gradlint("check", "--select", "", "."))


def test_empty_select_list_still_means_no_rules(project, gradlint):
    project.write("pyproject.toml", "[tool.gradlint]\nselect = []\n")
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    assert gradlint("check", ".").exit_code == 0


@pytest.mark.parametrize("pattern", BAD_PATTERNS)
def test_invalid_patterns_in_config_are_config_errors(project, gradlint, pattern):
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    quoted = json.dumps(pattern)
    project.write("pyproject.toml", f"[tool.gradlint]\nper-file-ignores = {{{quoted} = [\"GL001\"]}}\n")
    assert "invalid pattern" in _one_line_error(gradlint("check", "."))
    project.write("pyproject.toml", f"[tool.gradlint]\nextend-exclude = [{quoted}]\n")
    assert "invalid pattern" in _one_line_error(gradlint("check", "."))


def test_gitignore_lines_git_ignores_are_dropped(project, gradlint):
    project.write(".gitignore", "!\nfoo\\\n[z-a].py\n\\\nignored.py\n")
    project.write("ignored.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("kept.py", LOOP_WITHOUT_ZERO_GRAD)
    os.mkdir(project.root / ".git")
    (project.root / ".git" / "info").mkdir()
    (project.root / ".git" / "info" / "exclude").write_text("[z-a]\n!\n")
    result = gradlint("check", "--output-format", "json", ".")
    assert result.exit_code == 1, result.stderr
    assert {f["path"] for f in json.loads(result.stdout)} == {"kept.py"}


def test_compile_lines_keeps_valid_lines_in_order():
    spec = compile_lines(["*.py", "!", "!keep.py", "[z-a].py", "foo\\"])
    assert spec.match_file("a.py") and not spec.match_file("keep.py")
    assert [invalid_pattern(p) is None for p in BAD_PATTERNS + ["*.py"]] == [False, False, False, True]


def test_deeply_nested_pyproject_is_a_config_error(project, gradlint):
    depth = 100_000
    project.write("pyproject.toml", "[tool.gradlint]\nx = " + "[" * depth + "]" * depth + "\n")
    project.write("t.py", "x = 1\n")
    assert "nested too deeply" in _one_line_error(gradlint("check", "."))


def test_cache_dir_that_is_a_file_runs_uncached(project, gradlint):
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("cachefile", "not a folder")
    result = gradlint("check", "--cache-dir", "cachefile", ".")
    assert result.exit_code == 1
    assert "GL001" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "not a folder" in line]
    assert len(warnings) == 1 and "running without the cache" in warnings[0]
    assert (project.root / "cachefile").read_text() == "not a folder"


def test_nothing_to_lint_says_so_and_exits_0(project, gradlint):
    project.write("README.md", "no python here\n")
    result = gradlint("check", ".")
    assert result.exit_code == 0
    assert "No Python files found" in result.stderr and result.stdout == ""
    quiet = gradlint("check", "-q", ".")
    assert quiet.exit_code == 0 and quiet.stderr == ""


# -- cache entries -----------------------------------------------------------------------------

def _lint_into_cache(project, *files):
    settings = load_settings(str(project.root))
    return lint_files(list(files), settings, jobs=1, use_cache=True)


def _entry_files(project):
    return sorted((project.root / ".gradlint_cache").rglob("*.json"))


def test_every_entry_gradlint_writes_is_valid(project):
    names = sorted(n for n in os.listdir(CORPUS) if n.endswith(".py"))
    for name in names:
        shutil.copy(os.path.join(CORPUS, name), project.root / name)
    first = _lint_into_cache(project, *names)
    assert any(f.fix is not None for f in first.findings)  # fixes are validated too
    stored = [json.loads(p.read_text()) for p in _entry_files(project)]
    assert len(stored) == len(names)
    assert all(valid_entry(entry) for entry in stored)
    assert _lint_into_cache(project, *names).cache_hits == len(names)


WRONG = [
    {"deps": [], "findings": []},
    {"deps": {}, "findings": {}},
    {"deps": {"u.py": 5}, "findings": []},
    {"deps": {}, "findings": [{"code": "GL001"}]},
    {"deps": {}, "findings": "none"},
    {"deps": {}, "findings": [], "extra": 1},
]


def _good_finding(**changes):
    entry = {"code": "GL002", "message": "m", "line": 2, "column": 5, "end_line": 2, "end_column": 9,
             "severity": "warning", "fix": {"description": "d", "edits": [[10, 20, ""]]}}
    entry.update(changes)
    return entry


@pytest.mark.parametrize("changes", [
    {"line": "2"}, {"line": True}, {"line": 0}, {"end_line": 1}, {"column": -1}, {"code": "GL999"},
    {"code": 1}, {"message": None}, {"cell": 0}, {"fix": {"description": "d", "edits": []}},
    {"fix": {"description": "d", "edits": [[20, 10, ""]]}},
    {"fix": {"description": "d", "edits": [[0, 5, "a"], [3, 8, "b"]]}},
    {"fix": {"description": "d", "edits": [[0, 5]]}}, {"fix": "x"},
])
def test_wrong_findings_are_invalid(changes):
    assert valid_finding(_good_finding())
    assert not valid_finding(_good_finding(**changes))


def test_edits_outside_the_source_are_invalid():
    assert valid_finding(_good_finding(), source="x" * 20)
    assert not valid_finding(_good_finding(), source="x" * 19)


@pytest.mark.parametrize("crafted", WRONG)
def test_a_crafted_entry_with_wrong_types_is_a_miss(project, gradlint, crafted):
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    _lint_into_cache(project, "t.py")
    (entry,) = _entry_files(project)
    entry.write_text(json.dumps(crafted))
    again = _lint_into_cache(project, "t.py")
    assert again.cache_hits == 0 and [f.code for f in again.findings] == ["GL001"]
    entry.write_text(json.dumps(crafted))
    result = gradlint("check", ".")
    assert result.exit_code == 1 and "GL001" in result.stdout and "error" not in result.stderr


# -- the user's global excludes file (core.excludesFile) ---------------------------------------

@pytest.fixture
def git_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return home


def _linted(gradlint) -> set:
    result = gradlint("check", "--no-cache", "--output-format", "json", ".")
    assert result.exit_code in (0, 1), result.stderr
    return {f["path"] for f in json.loads(result.stdout)}


def test_default_global_excludes_file_is_honoured_in_a_repository(project, gradlint, git_home):
    (git_home / ".config" / "git").mkdir(parents=True)
    (git_home / ".config" / "git" / "ignore").write_text("scratch_*.py\n[z-a]\n")
    project.write("scratch_1.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    assert _linted(gradlint) == {"scratch_1.py", "train.py"}  # not a git repository: not applied
    os.mkdir(project.root / ".git")
    assert _linted(gradlint) == {"train.py"}
    # .gitignore overrides the global file, as in git
    project.write(".gitignore", "!scratch_1.py\n")
    assert _linted(gradlint) == {"scratch_1.py", "train.py"}


def test_core_excludes_file_from_user_and_repository_config(project, gradlint, git_home):
    (git_home / "my-ignores").write_text("user_*.py\n")
    (git_home / ".gitconfig").write_text('[user]\n\tname = x\n[core]\n\texcludesFile = "~/my-ignores"  # mine\n')
    project.write("user_1.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("repo_1.py", LOOP_WITHOUT_ZERO_GRAD)
    os.mkdir(project.root / ".git")
    assert _linted(gradlint) == {"repo_1.py"}
    (project.root / "repo-ignores").write_text("repo_*.py\n")
    (project.root / ".git" / "config").write_text(f"[Core]\n    excludesfile = {project.root / 'repo-ignores'}\n")
    assert _linted(gradlint) == {"user_1.py"}  # the repository's setting wins
    project.write("pyproject.toml", "[tool.gradlint]\nrespect-gitignore = false\n")
    assert _linted(gradlint) == {"user_1.py", "repo_1.py"}

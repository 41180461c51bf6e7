"""Baselines do not depend on the folder gradlint runs from, and `--fix` of one finding does not
make another baselined finding on the same line new."""

from __future__ import annotations

import os

import pytest

from gradlint.baseline import finding_keys, project_root
from gradlint.findings import Edit, Finding, Fix

RETAINED = """\
import torch

model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in data:
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward(retain_graph=True)
    opt.step()
"""

RETAINED_MULTILINE = RETAINED.replace(
    "    loss.backward(retain_graph=True)\n",
    "    loss.backward(\n        retain_graph=True,\n    )\n")


@pytest.mark.parametrize("marker", [None, ".git", "pyproject.toml"])
def test_keys_do_not_depend_on_the_current_folder(project, gradlint, monkeypatch, marker):
    if marker == ".git":
        os.mkdir(project.root / ".git")
    elif marker:
        project.write(marker, "[project]\nname = 'x'\n")
    project.write("sub/t.py", RETAINED)
    monkeypatch.chdir(project.root / "sub")
    wrote = gradlint("check", "--no-cache", ".", "--write-baseline", "b.json")
    assert wrote.exit_code == 0 and "wrote 2 findings" in wrote.stderr
    monkeypatch.chdir(project.root)
    result = gradlint("check", "--no-cache", "sub", "--baseline", "sub/b.json")
    assert (result.exit_code, result.stdout) == (0, ""), result.stderr
    assert "2 findings in baseline, 0 fixed since" in result.stderr
    # and from somewhere else entirely, by absolute paths
    monkeypatch.chdir(project.root.parent)
    result = gradlint("check", "--no-cache", str(project.root / "sub"), "--baseline",
                      str(project.root / "sub" / "b.json"))
    assert result.exit_code == 0, result.stdout + result.stderr


def test_project_root_is_the_nearest_marked_folder(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert project_root(str(tmp_path / "a" / "b" / "x.json")) == str(tmp_path / "a" / "b")
    (tmp_path / "a" / "pyproject.toml").write_text("")
    assert project_root(str(tmp_path / "a" / "b" / "x.json")) == str(tmp_path / "a")


@pytest.mark.parametrize("source", [RETAINED, RETAINED_MULTILINE], ids=["one-line", "multi-line"])
def test_fixing_one_finding_keeps_the_other_on_its_line_baselined(project, gradlint, source):
    project.write("t.py", source)
    wrote = gradlint("check", "--no-cache", ".", "--write-baseline", "b.json")
    assert "wrote 2 findings" in wrote.stderr
    fixed = gradlint("check", "--no-cache", "--fix", ".", "--baseline", "b.json")
    assert "retain_graph" not in (project.root / "t.py").read_text()
    assert (fixed.exit_code, fixed.stdout) == (0, ""), fixed.stderr
    assert "1 finding in baseline, 1 fixed since" in fixed.stderr
    again = gradlint("check", "--no-cache", ".", "--baseline", "b.json")
    assert (again.exit_code, again.stdout) == (0, "")


def test_keys_use_the_line_after_automatic_fixes_only():
    text = "f(a, b=1)  # x\ng(b=1)\n"
    start = text.index(", b=1")
    fixable = Finding("GL002", "m", "t.py", 1, 1, 1, 10, fix=Fix("drop", (Edit(start, start + 5, ""),)))
    other = Finding("GL001", "m", "t.py", 1, 1, 1, 10)
    second_line = Finding("GL001", "m", "t.py", 2, 1, 2, 7)
    after = text[:start] + text[start + 5:]
    before_keys = finding_keys([fixable, other, second_line], {"t.py": text}.get)
    after_keys = finding_keys([other, second_line], {"t.py": after}.get)
    assert before_keys[1:] == after_keys
    # a fix that plain --fix does not apply (an unsafe one) does not change keys
    unfixable = Finding("GL001", "m", "t.py", 1, 1, 1, 10, fix=Fix("x", (Edit(0, 1, "h"),), "unsafe"))
    assert finding_keys([unfixable], {"t.py": text}.get) == finding_keys([other], {"t.py": text}.get)

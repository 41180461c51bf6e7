"""Baselines: record findings, report only new ones, survive edits that shift lines."""

from __future__ import annotations

import json

import pytest

from gradlint.baseline import BaselineError, filter_new, finding_keys, read_baseline, write_baseline
from gradlint.findings import Finding

SOURCE = """import torch


def train(model, opt, data):
    for x in data:
        loss = model(x).sum()
        loss.backward()
        opt.step()


class Trainer:
    def fit(self, data):
        for x in data:
            loss = self.model(x).sum()
            loss.backward()
            self.opt.step()

    def finetune(self, data):
        for x in data:
            loss = self.model(x).sum()
            loss.backward()
            self.opt.step()
"""


def at(source, needle, occurrence=0, code="GL001", path="train.py"):
    """A finding on the `occurrence`-th line containing `needle`."""
    numbers = [n for n, ln in enumerate(source.splitlines(), 1) if needle in ln]
    line = numbers[occurrence]
    text = source.splitlines()[line - 1]
    column = len(text) - len(text.lstrip()) + 1
    return Finding(code, "m", path, line, column, line, len(text) + 1)


def old_findings(source=SOURCE):
    return [
        at(source, "loss.backward()", 0),
        at(source, "loss.backward()", 1),
        at(source, "loss.backward()", 2),
    ]


def test_roundtrip_reports_nothing_new(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # keys are relative to the baseline's folder (no project markers here)
    base = tmp_path / "baseline.json"
    assert write_baseline(old_findings(), {"train.py": SOURCE}.get, str(base)) == 3
    data = json.loads(base.read_text())
    assert data["version"] == 2 and sum(data["findings"].values()) == 3
    assert all(key.startswith("train.py::GL001::") for key in data["findings"])
    new, stats = filter_new(old_findings(), {"train.py": SOURCE}.get, str(base))
    assert new == []
    assert (stats.recorded, stats.matched, stats.fixed, stats.new) == (3, 3, 0, 0)
    assert stats.describe() == "3 findings in baseline, 0 fixed since"


def test_identical_lines_in_different_functions_have_different_keys():
    keys = finding_keys(old_findings(), {"train.py": SOURCE}.get)
    assert len(set(keys)) == 3  # train, Trainer.fit, Trainer.finetune


def test_matching_survives_edits_that_shift_lines(tmp_path):
    base = tmp_path / "baseline.json"
    write_baseline(old_findings(), {"train.py": SOURCE}.get, str(base))
    edited = (
        '"""Training utilities."""\nimport os\n'
        + SOURCE.replace("def train(model, opt, data):\n", "def train(model, opt, data):\n    # one epoch\n    model.train()\n")
        .replace("        loss.backward()\n", "        loss.backward()   \n", 1)  # whitespace only
    )
    new, stats = filter_new(old_findings(edited), {"train.py": edited}.get, str(base))
    assert new == [] and stats.matched == 3 and stats.fixed == 0


def test_new_finding_is_reported_and_fixed_ones_counted(tmp_path):
    base = tmp_path / "baseline.json"
    write_baseline(old_findings(), {"train.py": SOURCE}.get, str(base))
    # finetune is fixed; a new loop in a new function appears
    edited = SOURCE.replace(
        "    def finetune(self, data):\n        for x in data:\n            loss = self.model(x).sum()\n            loss.backward()\n",
        "    def finetune(self, data):\n        for x in data:\n            self.opt.zero_grad()\n            loss = self.model(x).sum()\n            loss.backward()\n",
    ) + "\n\ndef evaluate(model, opt, data):\n    for x in data:\n        loss = model(x).sum()\n        loss.backward()\n        opt.step()\n"
    findings = [at(edited, "loss.backward()", 0), at(edited, "loss.backward()", 1), at(edited, "loss.backward()", 3)]
    new, stats = filter_new(findings, {"train.py": edited}.get, str(base))
    assert [f.line for f in new] == [findings[2].line]
    assert (stats.matched, stats.fixed, stats.new) == (2, 1, 1)
    assert stats.describe() == "2 findings in baseline, 1 fixed since"


def test_counts_per_key_report_the_extra_occurrence(tmp_path):
    source = "for x in d:\n    loss.backward()\n    opt.step()\n"
    twice = source + source
    base = tmp_path / "b.json"
    write_baseline([at(source, "backward", path="t.py")], {"t.py": source}.get, str(base))
    findings = [at(twice, "backward", 0, path="t.py"), at(twice, "backward", 1, path="t.py")]
    new, stats = filter_new(findings, {"t.py": twice}.get, str(base))
    assert [f.line for f in new] == [5] and stats.matched == 1


def test_other_rule_or_file_is_new(tmp_path):
    base = tmp_path / "b.json"
    write_baseline(old_findings(), {"train.py": SOURCE}.get, str(base))
    moved = [at(SOURCE, "loss.backward()", 0, path="other.py"), at(SOURCE, "loss.backward()", 0, code="GL002")]
    new, _ = filter_new(moved, {"train.py": SOURCE, "other.py": SOURCE}.get, str(base))
    assert len(new) == 2


def test_fixed_counts_only_checked_files(tmp_path):
    base = tmp_path / "b.json"
    write_baseline(old_findings() + [at(SOURCE, "loss.backward()", path="other.py")], {"train.py": SOURCE, "other.py": SOURCE}.get, str(base))
    _, stats = filter_new([], {}.get, str(base), checked={"train.py"})
    assert stats.fixed == 3
    _, stats = filter_new([], {}.get, str(base))
    assert stats.fixed == 4


def test_unparsable_and_notebook_files_still_get_keys(tmp_path):
    nb = json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "source": ["def f():\n", "    loss.backward()"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    findings = [Finding("GL000", "cannot parse", "bad.py", 1, 5, 1, 6), Finding("GL001", "m", "nb.ipynb", 2, 5, 2, 20, cell=1)]
    keys = finding_keys(findings, {"bad.py": "def f(:\n", "nb.ipynb": nb}.get)
    assert len(set(keys)) == 2
    # the notebook key uses the enclosing function found in the joined program
    plain = finding_keys([Finding("GL001", "m", "nb.ipynb", 2, 5, 2, 20, cell=1)], {"nb.ipynb": nb.replace("def f", "def g")}.get)
    assert plain[0] != keys[1]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read baseline"),
        ("{oops", "not valid JSON"),
        ('{"version": 2}', "no 'findings'"),
        ('{"version": 99, "findings": {}}', "version 99"),
        ('{"version": 1, "findings": {}}', "older gradlint"),
        ('{"version": 2, "findings": {"k": -1}}', "non-negative"),
    ],
)
def test_bad_baseline_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BaselineError, match=message) as info:
        read_baseline(str(path))
    assert "\n" not in str(info.value)


def test_write_to_missing_directory_is_an_error(tmp_path):
    with pytest.raises(BaselineError, match="cannot write baseline"):
        write_baseline([], {}.get, str(tmp_path / "no" / "such" / "b.json"))


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


def test_cli_write_then_filter(project, gradlint):
    project.write("old.py", "def f(:\n    loss.backward()\n")
    result = gradlint("check", "--no-cache", "--write-baseline", "baseline.json")
    assert result.exit_code == 0 and "wrote 1 finding to baseline baseline.json" in result.stderr
    project.write("old.py", "# a header comment\n\n\ndef f(:\n    loss.backward()\n")  # moved, not new
    result = gradlint("check", "--no-cache", "--baseline", "baseline.json")
    assert result.exit_code == 0, result.stdout
    assert "1 finding in baseline, 0 fixed since" in result.stderr
    project.write("new.py", "x = (\nloss.backward()\n")
    result = gradlint("check", "--no-cache", "--baseline", "baseline.json", "--output-format", "json")
    assert result.exit_code == 1
    assert [f["path"] for f in json.loads(result.stdout)] == ["new.py"]
    project.write("old.py", "x = 1\n")
    result = gradlint("check", "--no-cache", "--baseline", "baseline.json", "new.py", "old.py")
    assert "0 findings in baseline, 1 fixed since" in result.stderr


def test_cli_bad_baseline_exits_2(project, gradlint):
    project.write("ok.py", "x = 1\n")
    project.write("baseline.json", "{broken")
    result = gradlint("check", "--no-cache", "--baseline", "baseline.json")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "not valid JSON" in result.stderr


def test_cli_baseline_with_real_findings_and_moves(project, gradlint):
    wrapped = "def train(model, opt, data):\n" + "".join(
        "    " + ln if ln.strip() else ln for ln in LOOP_WITHOUT_ZERO_GRAD.splitlines(True)
    )
    project.write("a.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("b.py", wrapped)
    result = gradlint("check", "--no-cache", "--write-baseline", "gl.json")
    assert "wrote 2 findings" in result.stderr
    project.write("a.py", "# moved down\n\n" + LOOP_WITHOUT_ZERO_GRAD)
    project.write("b.py", "import os\n\n\n" + wrapped + "\n\n" + wrapped.replace("def train", "def train_again"))
    result = gradlint("check", "--no-cache", "--baseline", "gl.json", "--output-format", "json")
    assert result.exit_code == 1
    [new] = json.loads(result.stdout)
    assert new["path"] == "b.py" and new["line"] > 15  # the copy in train_again, not the moved one
    assert "2 findings in baseline, 0 fixed since" in result.stderr

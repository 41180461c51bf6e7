"""Notebook cells run under a Python cell magic (`%%time`, ...) are linted with the right line
numbers; cells in another language (`%%bash`, `%%writefile`) are not; a notebook nested too deep
to read is GL000, not an internal error."""

from __future__ import annotations

import json

import pytest

from gradlint import engine
from gradlint.config import load_settings
from gradlint.notebook import parse_notebook

LOOP = [
    "import torch\n",
    "model = torch.nn.Linear(4, 1)\n",
    "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n",
    "for x, y in data:\n",
    "    loss = torch.nn.functional.mse_loss(model(x), y)\n",
    "    loss.backward()\n",
    "    opt.step()\n",
]
BACKWARD_LINE = 6  # in LOOP


def notebook(*cells) -> str:
    doc = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                      "source": source} for source in cells],
           "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
           "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(doc, indent=1)


def lint(tmp_path, text):
    path = tmp_path / "nb.ipynb"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(str(tmp_path), isolated=True)
    return engine.lint_bytes(path.read_bytes(), str(path), settings)


@pytest.mark.parametrize("magic", ["%%time", "%%timeit -n 1 -r 1", "%%capture out", "%%prun -s cumulative",
                                   "  %%time"])
def test_python_cell_magic_body_is_linted_with_cell_line_numbers(tmp_path, monkeypatch, magic):
    monkeypatch.chdir(tmp_path)
    findings = lint(tmp_path, notebook(["\n", magic + "\n"] + LOOP))
    assert [(f.code, f.cell, f.line) for f in findings] == [("GL001", 1, BACKWARD_LINE + 2)]


def test_magic_arguments_continued_with_a_backslash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    findings = lint(tmp_path, notebook(["%%capture \\\n", "   out\n"] + LOOP))
    assert [(f.code, f.line) for f in findings] == [("GL001", BACKWARD_LINE + 2)]


def test_nested_python_cell_magics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    findings = lint(tmp_path, notebook(["%%time\n", "%%capture\n"] + LOOP))
    assert [(f.code, f.line) for f in findings] == [("GL001", BACKWARD_LINE + 2)]


@pytest.mark.parametrize("magic", ["%%bash", "%%writefile train.py", "%%html", "%%python", "%%script python"])
def test_other_cell_magics_are_another_language(tmp_path, monkeypatch, magic):
    monkeypatch.chdir(tmp_path)
    assert lint(tmp_path, notebook([magic + "\n"] + LOOP)) == []


def test_the_program_keeps_one_line_per_cell_line():
    nb = parse_notebook(notebook(["%%time\n", "x = 1\n", "%matplotlib inline\n"], ["%%bash\n", "ls\n"]))
    program = nb.program.split("\n")
    assert program[:5] == ["", "x = 1", "pass", "", ""]
    assert nb.origin[:5] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]


def test_deeply_nested_notebook_is_gl000(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    depth = 100_000
    [finding] = lint(tmp_path, '{"cells": [], "metadata": ' + "[" * depth + "]" * depth + "}")
    assert finding.code == "GL000" and "nested too deeply" in finding.message


def test_cli_reports_the_magic_cell(project, gradlint):
    project.write("nb.ipynb", notebook(["%%time\n"] + LOOP))
    result = gradlint("check", "--no-cache", "--output-format", "json", ".")
    assert result.exit_code == 1, result.stderr
    [row] = json.loads(result.stdout)
    assert (row["code"], row["cell"], row["line"]) == ("GL001", 1, BACKWARD_LINE + 1)

"""Notebooks: code cells joined into one program, IPython syntax skipped, findings by cell."""

from __future__ import annotations

import json

import pytest

from gradlint import engine
from gradlint.config import load_settings
from gradlint.findings import Finding
from gradlint.notebook import NotebookError, cell_source_reader, parse_notebook


def code(source, **extra):
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
    cell.update(extra)
    return cell


def markdown(source):
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def notebook_text(cells, language="python", indent=1):
    doc = {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "k", "display_name": "k", "language": language}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(doc, indent=indent)


def lines(text):
    return [ln + "\n" for ln in text.split("\n")[:-1]] + [text.split("\n")[-1]]


def test_cells_join_in_order_and_map_back():
    nb = parse_notebook(
        notebook_text([markdown(["# Title\n"]), code(lines("import torch\nx = 1")), code([]), code("y = 2\nz = 3\n")])
    )
    assert nb.program == "import torch\nx = 1\ny = 2\nz = 3\n"
    assert nb.origin == [(1, 1), (1, 2), (3, 1), (3, 2)]
    assert nb.locate(3) == (3, 1) and nb.cell_line(3, 2) == "z = 3"


def test_ipython_syntax_is_skipped_keeping_line_numbers():
    cell = lines(
        "%matplotlib inline\n"
        "!pip install torch\n"
        "files = !ls\n"
        "t = %timeit -o f()\n"
        "for i in range(3):\n"
        "    %time step()\n"
        "    total = (a\n"
        "             % b)\n"
        "    ok = (a\n"
        "          != b)\n"
        "model?\n"
        "!echo one \\\n"
        "  two"
    )
    nb = parse_notebook(notebook_text([code(cell), code(lines("%%bash\necho hi\nexit 1"))]))
    program = nb.program.split("\n")
    assert program[:12] == [
        "pass",
        "pass",
        "pass",
        "pass",
        "for i in range(3):",
        "    pass",
        "    total = (a",
        "             % b)",
        "    ok = (a",
        "          != b)",
        "pass",
        "pass",
    ]
    assert program[12] == ""  # continuation of the skipped shell line
    assert program[13:16] == ["", "", ""]  # the %%bash cell, blanked line for line
    compile(nb.program, "nb", "exec")  # still Python
    assert nb.locate(14) == (2, 1)


def test_non_python_kernels_have_no_program():
    nb = parse_notebook(notebook_text([code(["library(torch)\n"])], language="R"))
    assert nb.program == "" and nb.cells == []


def test_nbformat3_worksheets():
    doc = {"nbformat": 3, "metadata": {}, "worksheets": [{"cells": [{"cell_type": "code", "input": ["a = 1\n", "b = 2"]}]}]}
    nb = parse_notebook(json.dumps(doc))
    assert nb.program == "a = 1\nb = 2\n"


@pytest.mark.parametrize("text", ["{not json", "[]", '{"metadata": {}}', "\"cells\""])
def test_not_a_notebook(text):
    with pytest.raises(NotebookError):
        parse_notebook(text)


def test_file_lines_found_for_jupyter_layout_only():
    cells = [markdown(["a\n", "b"]), code(["x = 1\n", "loss.backward()\n", "opt.step()"])]
    text = notebook_text(cells)
    nb = parse_notebook(text)
    raw = text.split("\n")
    assert [raw[nb.file_line[(1, n)] - 1].strip() for n in (1, 2, 3)] == ['"x = 1\\n",', '"loss.backward()\\n",', '"opt.step()"']
    assert parse_notebook(notebook_text(cells, indent=None)).file_line == {}  # minified: no guess


def test_to_cells_cuts_spans_at_the_cell_end_and_drops_fixes():
    nb = parse_notebook(notebook_text([code(["a = (1,\n", "  2)"]), code(["b = 3"])]))
    f = Finding("GL000", "m", "nb.ipynb", 2, 3, 3, 4)
    moved = nb.to_cells(f)
    assert (moved.cell, moved.line, moved.column, moved.end_line, moved.end_column) == (1, 2, 3, 2, 5)
    assert moved.fix is None


def test_cell_source_reader():
    text = notebook_text([code(["x = 1\n", "y = 2"])])
    read = cell_source_reader({"nb.ipynb": text}.get)
    assert read("nb.ipynb", 1) == "x = 1\ny = 2\n"
    assert read("nb.ipynb", 2) is None and read("other.ipynb", 1) is None


@pytest.fixture
def settings(tmp_path):
    return load_settings(str(tmp_path), isolated=True)


def lint(tmp_path, settings, text, name="nb.ipynb"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return engine.lint_bytes(path.read_bytes(), str(path), settings)


def test_syntax_error_reported_in_its_cell(tmp_path, settings, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = notebook_text([code(["import torch\n"]), code(["x = 1\n", "def broken(:\n", "    loss.backward()"])])
    [f] = lint(tmp_path, settings, text)
    assert (f.code, f.path, f.cell, f.line) == ("GL000", "nb.ipynb", 2, 2)


@pytest.mark.parametrize("data", [b"{\"cells\": [", b"\xff\xfe\x00garbage", b"[1, 2]"])
def test_bad_notebook_is_gl000_not_a_crash(tmp_path, settings, monkeypatch, data):
    monkeypatch.chdir(tmp_path)
    [f] = lint(tmp_path, settings, data)
    assert f.code == "GL000" and f.cell is None and f.line >= 1


def test_empty_notebook_is_clean(tmp_path, settings, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert lint(tmp_path, settings, notebook_text([markdown(["just text"])])) == []


# --- end to end through `gradlint check` ------------------------------------------------------


def test_cli_reports_notebook_cells(project, gradlint):
    project.write("nb.ipynb", notebook_text([code(["%pip install torch\n", "import torch\n"]), markdown(["x"]),
                                              code(["x = 1\n", "def broken(:\n", "    loss.backward()"])]))
    project.write("plain.py", "x = 1\n")
    result = gradlint("check", "--no-cache", "--output-format", "json")
    assert result.exit_code == 1
    [f] = json.loads(result.stdout)
    assert (f["path"], f["cell"], f["line"], f["code"]) == ("nb.ipynb", 2, 2, "GL000")
    full = gradlint("check", "--no-cache").stdout
    assert full.startswith("nb.ipynb:cell 2:2:")
    assert "2 | def broken(:" in full  # the excerpt is the cell's line, not the JSON file's


def test_cli_stdin_filename(project, gradlint):
    result = gradlint("check", "-", "--stdin-filename", "train.py", "--output-format", "json", input="x = (\nloss.backward()\n")
    assert result.exit_code == 1
    assert [(f["path"], f["code"]) for f in json.loads(result.stdout)] == [("train.py", "GL000")]
    result = gradlint("check", "-", "--stdin-filename", "train.py", input="x = 1\n")
    assert result.exit_code == 0


def test_messages_refer_to_cell_lines():
    nb = parse_notebook(notebook_text([code(["a = 1\n", "b = 2\n"]), code(["c = 3\n", "d = 4\n", "e = 5"])]))
    f = Finding("GL001", "backward adds to `opt.step()` (line 5) and `x` (line 2)", "nb.ipynb", 4, 1, 4, 2)
    assert nb.to_cells(f).message == "backward adds to `opt.step()` (line 3) and `x` (cell 1, line 2)"


def test_cli_finds_a_training_loop_split_over_cells(project, gradlint):
    setup = ["%matplotlib inline\n", "import torch\n", "model = torch.nn.Linear(4, 1)\n",
             "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)"]
    loop = ["!nvidia-smi\n", "for step in range(5):\n", "    x = torch.randn(8, 4)\n",
            "    loss = model(x).pow(2).mean()\n", "    loss.backward()\n", "    optimizer.step()"]
    project.write("nb.ipynb", notebook_text([code(setup), markdown(["## train"]), code(loop)]))
    result = gradlint("check", "--no-cache", "--select", "GL001", "--output-format", "json")
    assert result.exit_code == 1
    [f] = json.loads(result.stdout)
    assert (f["code"], f["cell"], f["line"], f["column"], f["end_line"]) == ("GL001", 2, 5, 5, 5)
    assert "(line 6)" in f["message"]  # the step, in cell terms
    fixed = [ln.replace("    loss.backward()", "    optimizer.zero_grad()\n    loss.backward()") for ln in loop]
    project.write("nb.ipynb", notebook_text([code(setup), code(fixed)]))
    assert gradlint("check", "--no-cache", "--select", "GL001").exit_code == 0


def test_cli_stdin_notebook(project, gradlint):
    text = notebook_text([code(["import torch\n"]), code(["def broken(:\n", "    loss.backward()"])])
    result = gradlint("check", "-", "--stdin-filename", "nb.ipynb", "--output-format", "json", input=text)
    assert result.exit_code == 1
    assert [(f["path"], f["cell"], f["line"]) for f in json.loads(result.stdout)] == [("nb.ipynb", 2, 1)]

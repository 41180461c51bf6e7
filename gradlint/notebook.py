"""Jupyter notebooks: lint the code cells of an `.ipynb` as one program, report by cell.

Many training loops live in notebooks, and a loop in one cell often uses an optimizer made in an
earlier one, so the code cells are joined in order into a single Python program. IPython-only
syntax (line magics `%time`, shell escapes `!pip`, `x = !ls`, help `obj?`) is not Python: each
such line becomes `pass` at the same indentation, so the program still parses and its line numbers
map one to one back to (cell, line within the cell). A cell magic that runs its body as Python in
the notebook's namespace (`%%time`, `%%timeit`, `%%capture`, `%%prun`, ...) has only its magic line
blanked, so the body is linted; any other cell magic (`%%bash`, `%%writefile`, `%%html`, ...)
makes the whole cell another language, and it is left out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Optional

from gradlint.findings import Finding

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Statement-position IPython syntax: %magic, !shell, `name = %magic` / `name = !shell`, `obj?`.
# `%` must be followed by a name and `!` must not start `!=`, so continuation lines of a
# bracketed expression (`    % b)`, `    != c)`) are left alone.
_IPYTHON_LINE = re.compile(
    r"^\s*(?:%%?[A-Za-z]|![^=]|[\w.]+\s*=\s*(?:%[A-Za-z]|![^=])|[\w.\[\]()]+\s*\?\??\s*$|\?\??[\w.])"
)


# Cell magics whose body is ordinary Python run in the notebook's own namespace (IPython's
# %%time/%%timeit/%%capture/%%prun/%%debug, memory_profiler's %%memit). Not %%python & co.: those
# run the body in a separate process, so joining it to the program would invent data flow.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "memit"})
_CELL_MAGIC = re.compile(r"^\s*%%([A-Za-z_][\w.]*)")

# A message's reference to another program line, e.g. "`optimizer.step()` (line 10)".
_LINE_REFERENCE = re.compile(r"(\()line (\d+)(\))")


class NotebookError(ValueError):
    """The file is not a notebook we can read (bad JSON or not nbformat); `line`/`column` say
    where in the file, when known."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def split_lines(text: str) -> list:
    """Lines as Python's tokenizer (and LibCST positions) count them: \\n, \\r\\n, \\r only."""
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


@dataclass
class Notebook:
    """The code cells of a notebook and the program made of them.

    `origin[i]` is the (cell, line) — 1-based code-cell index and line within it — of program
    line i + 1. `file_line[(cell, line)]` is the line of the .ipynb file that holds that source
    line, when the file is laid out one source line per JSON line (as Jupyter writes it).
    """

    cells: list  # per code cell, its source lines
    program: str
    origin: list
    file_line: dict = field(default_factory=dict)

    def cell_line(self, cell: int, line: int) -> str:
        """Text of a line of a code cell ('' when out of range)."""
        if 1 <= cell <= len(self.cells) and 1 <= line <= len(self.cells[cell - 1]):
            return self.cells[cell - 1][line - 1]
        return ""

    def locate(self, program_line: int) -> tuple:
        """(cell, line in cell) of a program line; clamped into the program."""
        if not self.origin:
            return (1, 1)
        return self.origin[min(max(program_line, 1), len(self.origin)) - 1]

    def to_cells(self, finding: Finding) -> Finding:
        """The finding with its position expressed in cell coordinates.

        A span that would run into a later cell is cut at the end of its first cell. The fix is
        dropped: its offsets point into the joined program, not into the notebook's JSON.
        """
        cell, line = self.locate(finding.line)
        end_cell, end_line = self.locate(finding.end_line)
        end_column = finding.end_column
        if end_cell != cell or end_line < line:
            end_line = max(len(self.cells[cell - 1]), line) if self.cells else line
            end_column = len(self.cell_line(cell, end_line)) + 1
        if end_line == line and end_column < finding.column:
            end_column = finding.column
        message = _LINE_REFERENCE.sub(lambda m: self._line_reference(m, cell), finding.message)
        return finding.with_(
            cell=cell, line=line, end_line=end_line, end_column=end_column, fix=None, message=message,
            related=(),  # lines of the joined program; nothing runs a notebook under the tracer
        )

    def _line_reference(self, match, cell: int) -> str:
        """`(line 10)` of the joined program, said in cell terms: `(line 6)` or `(cell 2, line 6)`."""
        other_cell, other_line = self.locate(int(match.group(2)))
        where = f"line {other_line}" if other_cell == cell else f"cell {other_cell}, line {other_line}"
        return f"{match.group(1)}{where}{match.group(3)}"


def _cell_source(cell: dict) -> str:
    source = cell.get("source", cell.get("input", ""))  # nbformat 4 / 3
    if isinstance(source, list):
        return "".join(part for part in source if isinstance(part, str))
    return source if isinstance(source, str) else ""


def _all_cells(notebook: dict) -> list:
    """Every cell (any type) in document order; nbformat 3 keeps them under worksheets."""
    if isinstance(notebook.get("cells"), list):
        return [c for c in notebook["cells"] if isinstance(c, dict)]
    cells: list = []
    for sheet in notebook.get("worksheets") or []:
        if isinstance(sheet, dict) and isinstance(sheet.get("cells"), list):
            cells.extend(c for c in sheet["cells"] if isinstance(c, dict))
    return cells


def _is_python(notebook: dict) -> bool:
    """False only when the notebook says its kernel language is something else (R, Julia...)."""
    raw = notebook.get("metadata")
    metadata: dict = raw if isinstance(raw, dict) else {}
    for key, sub in (("language_info", "name"), ("kernelspec", "language")):
        value = metadata.get(key)
        if isinstance(value, dict) and isinstance(value.get(sub), str):
            return value[sub].lower() in ("python", "python3", "ipython", "ipython3")
    return True


def _python_lines(lines: list) -> list:
    """The cell's lines with IPython-only syntax replaced by `pass` (same indentation)."""
    first = next((n for n, ln in enumerate(lines) if ln.strip()), None)
    magic = _CELL_MAGIC.match(lines[first]) if first is not None else None
    if magic is not None:
        if magic.group(1) not in PYTHON_CELL_MAGICS:  # the whole cell is another language
            return ["" for _ in lines]
        # `%%time` & co.: blank the lines up to the magic line (a backslash may continue its
        # arguments), then lint the body as Python, line numbers unchanged.
        skip = (first or 0) + 1
        while lines[skip - 1].rstrip().endswith("\\") and skip < len(lines):
            skip += 1
        return ["" for _ in lines[:skip]] + _python_lines(lines[skip:])
    out = []
    continued = False  # a skipped line ending in a backslash continues on the next
    for ln in lines:
        if continued or _IPYTHON_LINE.match(ln):
            if continued:
                out.append("")
            else:
                indent = ln[: len(ln) - len(ln.lstrip())]
                out.append(indent + "pass")
            continued = ln.rstrip().endswith("\\")
        else:
            out.append(ln)
    return out


def parse_notebook(text: str) -> Notebook:
    """Read an .ipynb document; raises NotebookError when it is not one."""
    try:
        data = json.loads(text)
    except RecursionError:  # arrays or objects nested thousands deep
        raise NotebookError("invalid notebook JSON: nested too deeply to read") from None
    except ValueError as exc:
        line, column = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
        raise NotebookError(f"invalid notebook JSON: {getattr(exc, 'msg', exc)}", line, column) from None
    if not isinstance(data, dict) or not ("cells" in data or "worksheets" in data):
        raise NotebookError("not a Jupyter notebook: no 'cells' list")
    all_cells = _all_cells(data)
    python = _is_python(data)
    cells: list = []
    program: list = []
    origin: list = []
    code_index: dict = {}  # position among all cells -> 1-based code-cell index
    for position, cell in enumerate(all_cells):
        if cell.get("cell_type") != "code" or not python:
            continue
        lines = split_lines(_cell_source(cell))
        cells.append(lines)
        code_index[position] = len(cells)
        for number, ln in enumerate(_python_lines(lines), start=1):
            program.append(ln)
            origin.append((len(cells), number))
    text_program = "\n".join(program) + ("\n" if program else "")
    notebook = Notebook(cells=cells, program=text_program, origin=origin)
    notebook.file_line = _file_lines(text, all_cells, code_index)
    return notebook


_SOURCE_KEY = re.compile(r'^\s*"(?:source|input)"\s*:\s*(.*)$')


def _file_lines(text: str, all_cells: list, code_index: dict) -> dict:
    """Where each code-cell source line sits in the .ipynb file, for CI annotations.

    Jupyter writes `"source": [` followed by one JSON string per source line. We walk the file's
    lines in step with the cells and accept a match only when the decoded strings equal the cell's
    source, so an unusual layout simply yields no mapping (never a wrong one).
    """
    raw = split_lines(text)
    mapping: dict = {}
    cursor = 0
    for position, cell in enumerate(all_cells):
        expected = cell.get("source", cell.get("input"))
        if isinstance(expected, str):
            expected = [expected] if expected else []
        if not isinstance(expected, list):
            continue
        found = _find_source(raw, cursor, expected)
        if found is None:
            continue
        cursor, element_lines = found
        if position in code_index and all(e.count("\n") <= 1 and "\r" not in e for e in expected):
            for number, file_line in enumerate(element_lines, start=1):
                mapping[(code_index[position], number)] = file_line
    return mapping


def _find_source(raw: list, start: int, expected: list) -> Optional[tuple]:
    """(next cursor, file line of each element) of the first `"source"` at or after `start`
    whose value decodes to `expected`, or None."""
    for i in range(start, len(raw)):
        match = _SOURCE_KEY.match(raw[i])
        if not match:
            continue
        rest = match.group(1).rstrip().rstrip(",")
        if rest != "[":
            try:
                value = json.loads(rest)
            except ValueError:
                continue
            value = [value] if isinstance(value, str) and value else value
            if value == expected:
                return i + 1, [i + 1] * len(expected)
            continue
        elements, lines, j = [], [], i + 1
        while j < len(raw) and raw[j].strip() not in ("]", "],"):
            try:
                elements.append(json.loads(raw[j].strip().rstrip(",")))
            except ValueError:
                break
            lines.append(j + 1)
            j += 1
        if elements == expected:
            return j + 1, lines
    return None


# ---------------------------------------------------------------------------------------------
# Loading (for the engine) and cell sources (for reporters)


def load_notebook(data: bytes) -> Notebook:
    """The notebook in a file's bytes (the engine lints its joined `program` and moves the
    findings into cells with `to_cells`). Raises NotebookError, with a one-line reason, for a
    file that is not valid UTF-8 JSON / nbformat."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise NotebookError(f"cannot decode notebook as UTF-8: invalid byte at offset {err.start}") from None
    return parse_notebook(text)


def is_notebook(path: str) -> bool:
    """Is the file at `path` a Jupyter notebook (by its suffix)?"""
    return path.lower().endswith(".ipynb")


def cell_source_reader(source_of):
    """(path, cell) -> that code cell's source, for reporters that print source excerpts
    (ReportContext.extra["cell_source"]). Notebooks are parsed once each."""
    parsed: dict = {}

    def cell_source(path: str, cell: int):
        if path not in parsed:
            text = source_of(path)
            try:
                parsed[path] = parse_notebook(text) if text is not None else None
            except NotebookError:
                parsed[path] = None
        notebook = parsed[path]
        if notebook is None or not 1 <= cell <= len(notebook.cells):
            return None
        return "\n".join(notebook.cells[cell - 1]) + "\n"

    return cell_source


def cell_source(path: str, cell: int):
    """The source of code cell `cell` (1-based) of the notebook file at `path`, or None; what the
    CLI puts in ReportContext.extra["cell_source"] for source excerpts."""
    return _reader(path, cell)


def _read_file(path: str):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None


_reader = cell_source_reader(_read_file)

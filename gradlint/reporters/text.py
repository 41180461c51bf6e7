"""Text reports: `full` (location, code, name, message, then the source line with carets under the
reported range) and `concise` (one line per finding). Notebook findings name the cell:
`nb.ipynb:cell 3:12:5: ...`.
"""

from __future__ import annotations

from typing import List, Optional

from gradlint.findings import Finding
from gradlint.fingerprint import printable_path
from gradlint.lines import split_lines


def location(finding: Finding) -> str:
    """`path:line:col`, or `path:cell N:line:col` for a notebook cell."""
    path = printable_path(finding.path)  # a file name that is not UTF-8 shows its bytes as \xNN
    if finding.cell is not None:
        return f"{path}:cell {finding.cell}:{finding.line}:{finding.column}"
    return f"{path}:{finding.line}:{finding.column}"


def headline(finding: Finding) -> str:
    text = f"{location(finding)}: {finding.code} [{finding.name}] {finding.message}"
    return " ".join(text.splitlines())  # one line, whatever the message holds


def render_concise(findings: list, ctx) -> str:
    return "".join(headline(f) + "\n" for f in sorted(findings, key=Finding.sort_key))


def _source_lines(finding: Finding, ctx) -> Optional[List[str]]:
    """The lines the finding's line numbers refer to (the file, or the notebook cell)."""
    if finding.cell is not None:
        cell_source = ctx.extra.get("cell_source")
        text = cell_source(finding.path, finding.cell) if cell_source else None
    else:
        text = ctx.source_of(finding.path)
    return split_lines(text) if text is not None else None  # Python's line numbering


def excerpt(finding: Finding, lines: List[str]) -> List[str]:
    """The start line of the finding with a caret line under its columns."""
    if not 1 <= finding.line <= len(lines):
        return []
    line = lines[finding.line - 1].rstrip("\r\n")
    start = max(finding.column - 1, 0)
    if finding.end_line == finding.line:
        end = max(finding.end_column - 1, start + 1)
    else:
        end = max(len(line), start + 1)
    end = min(end, max(len(line), start + 1))
    gutter = str(finding.line)
    pad = " " * len(gutter)
    # Keep tabs before the range so the carets line up under it in a terminal.
    lead = "".join(ch if ch == "\t" else " " for ch in line[:start])
    return [
        f"{pad} |",
        f"{gutter} | {line}",
        f"{pad} | {lead}{'^' * (end - start)}",
    ]


def render_full(findings: list, ctx) -> str:
    out: List[str] = []
    for finding in sorted(findings, key=Finding.sort_key):
        out.append(headline(finding))
        lines = _source_lines(finding, ctx)
        if lines is not None:
            out.extend(excerpt(finding, lines))
        if finding.runtime is not None or not finding.static:
            verdict = finding.runtime or "observed"
            out.append(f"  = runtime: {verdict}" + (f": {finding.evidence}" if finding.evidence else ""))
        if finding.fix is not None:
            out.append(f"  = fix available: {finding.fix.description}")
        out.append("")
    return "\n".join(out) + ("\n" if out else "")

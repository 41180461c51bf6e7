"""Text reports: `full` (location, code, name, severity, message, then the source line with carets
under the reported range, and `= help:` / `= fix:` lines) and `concise` (one line per finding).
Notebook findings name the cell: `nb.ipynb:cell 3:12:5: ...`.

Colour (ANSI) is used when `ctx.extra["colour"]` is true: the caller decides from the terminal,
NO_COLOR and FORCE_COLOR (see `gradlint.options.use_colour`).
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


_SEVERITY_COLOUR = {"error": "31", "warning": "33", "note": "36"}  # red, yellow, cyan


class _Paint:
    """ANSI colour, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled and text else text


_PLAIN = _Paint(False)


def headline(finding: Finding, paint: _Paint = _PLAIN) -> str:
    """`path:line:col: CODE [name] severity: message`, on one line whatever the message holds."""
    severity = paint(finding.severity, "1;" + _SEVERITY_COLOUR.get(finding.severity, "0"))
    text = (f"{paint(location(finding), '1')}: {paint(finding.code, _SEVERITY_COLOUR.get(finding.severity, '0'))} "
            f"[{finding.name}] {severity}: {finding.message}")
    return " ".join(text.splitlines())


def _paint(ctx) -> _Paint:
    return _Paint(bool(getattr(ctx, "extra", {}).get("colour")))


def render_concise(findings: list, ctx) -> str:
    """One headline per finding; under `gradlint run` it ends with the runtime verdict
    (` (runtime: unexercised)`), which decides whether the finding fails the run."""
    paint = _paint(ctx)
    lines = []
    for finding in sorted(findings, key=Finding.sort_key):
        line = headline(finding, paint)
        if finding.runtime is not None or not finding.static:
            line += f" (runtime: {finding.runtime or 'observed'})"
        lines.append(line + "\n")
    return "".join(lines)


def _source_lines(finding: Finding, ctx) -> Optional[List[str]]:
    """The lines the finding's line numbers refer to (the file, or the notebook cell)."""
    if finding.cell is not None:
        cell_source = ctx.extra.get("cell_source")
        text = cell_source(finding.path, finding.cell) if cell_source else None
    else:
        text = ctx.source_of(finding.path)
    return split_lines(text) if text is not None else None  # Python's line numbering


def excerpt(finding: Finding, lines: List[str], paint: _Paint = _PLAIN) -> List[str]:
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
    bar = paint("|", "34")
    return [
        f"{pad} {bar}",
        f"{paint(gutter, '34')} {bar} {line}",
        f"{pad} {bar} {lead}{paint('^' * (end - start), _SEVERITY_COLOUR.get(finding.severity, '0'))}",
    ]


def fix_line(finding: Finding) -> Optional[str]:
    """`fix: DESCRIPTION (safe: --fix)` / `(unsafe: --unsafe-fixes --fix)`, or None without a fix."""
    if finding.fix is None:
        return None
    how = "--fix" if finding.fix.applicability == "safe" else "--unsafe-fixes --fix"
    return f"fix: {finding.fix.description} ({finding.fix.applicability}: {how})"


def render_full(findings: list, ctx) -> str:
    paint = _paint(ctx)
    out: List[str] = []
    for finding in sorted(findings, key=Finding.sort_key):
        out.append(headline(finding, paint))
        lines = _source_lines(finding, ctx)
        if lines is not None:
            out.extend(excerpt(finding, lines, paint))
        eq = paint("=", "34")
        if finding.help:
            out.append(f"  {eq} {paint('help', '1')}: {' '.join(finding.help.split())}")
        if finding.runtime is not None or not finding.static:
            verdict = finding.runtime or "observed"
            out.append(f"  {eq} runtime: {verdict}" + (f": {finding.evidence}" if finding.evidence else ""))
        fix = fix_line(finding)
        if fix is not None:
            out.append(f"  {eq} {fix}")
        out.append("")
    return "\n".join(out) + ("\n" if out else "")

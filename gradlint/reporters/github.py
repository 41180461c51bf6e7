"""`--output-format github`: GitHub Actions workflow commands, one annotation per finding.

    ::error file=train.py,line=15,endLine=15,col=9,endColumn=24,title=gradlint (GL001 missing-zero-grad)::...
    (then `train.py:15:9: message`)

The runner parses these lines from the step's output. Escaping follows @actions/toolkit's
command.ts: the message escapes % CR LF, property values also : and , (so hostile file names
cannot inject properties). `col`/`endColumn` are only sent for one-line spans: the runner rejects
them when line != endLine. GitHub shows at most 10 annotations of each type per step, so findings
go out worst first, a closing notice counts what was not annotated, and with $GITHUB_STEP_SUMMARY
set a markdown summary of every finding is appended to the job summary.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Optional

from gradlint.findings import RULES, Finding
from gradlint.fingerprint import SourceLines, posix_path, printable_path

COMMAND = {"error": "error", "warning": "warning", "note": "notice"}
RANK = {"error": 0, "warning": 1, "note": 2}
PER_TYPE_LIMIT = 10  # annotations of one type GitHub shows per step
SUMMARY_ROWS = 500  # findings listed in the step summary (its size is capped at 1 MiB)


def escape_data(text: str) -> str:
    """Escape a workflow command's message (the part after the final '::')."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a property value (file, title): data escapes plus ':' and ','."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(kind: str, message: str, **properties) -> str:
    """One workflow command line; properties whose value is None are left out, order kept."""
    props = ",".join(f"{k}={escape_property(str(v))}" for k, v in properties.items() if v is not None)
    return f"::{kind}{' ' + props if props else ''}::{escape_data(message)}"


def annotation_path(path: str, cwd: str) -> str:
    """The finding's path relative to $GITHUB_WORKSPACE when it lies there, else as reported."""
    workspace = os.environ.get("GITHUB_WORKSPACE")
    if workspace:
        absolute = os.path.normpath(os.path.join(cwd, path))
        try:
            relative = os.path.relpath(absolute, os.path.realpath(workspace))
            if not relative.startswith(".."):
                return printable_path(posix_path(relative))
            relative = os.path.relpath(absolute, workspace)
            if not relative.startswith(".."):
                return printable_path(posix_path(relative))
        except ValueError:  # another drive on Windows
            pass
    return printable_path(posix_path(path))


def location_text(finding: Finding) -> str:
    """`path:line:col` or, in a notebook, `path:cell N:line:col`."""
    cell = f"cell {finding.cell}:" if finding.cell is not None else ""
    return f"{printable_path(posix_path(finding.path))}:{cell}{finding.line}:{finding.column}"


def worst_first(findings: list) -> list:
    return sorted(findings, key=lambda f: (RANK.get(f.severity, 1), f.sort_key()))


def annotate(finding: Finding, cwd: str, lines: SourceLines) -> str:
    """The workflow command for one finding."""
    kind = COMMAND.get(finding.severity, "warning")
    title = f"gradlint ({finding.code} {finding.name})"
    message = f"{location_text(finding)}: {finding.message}"
    if finding.runtime:
        message += f" [runtime: {finding.runtime}{': ' + finding.evidence if finding.evidence else ''}]"
    path = annotation_path(finding.path, cwd)
    line, end_line, col, end_col = _region(finding, lines)
    if line is None:
        return command(kind, message, file=path, title=title)
    if end_line != line:
        col = end_col = None
    return command(kind, message, file=path, line=line, endLine=end_line, col=col, endColumn=end_col, title=title)


def _region(finding: Finding, lines: SourceLines) -> tuple:
    """(line, endLine, col, endColumn) in the annotated file; notebook cells are placed on the
    .ipynb line holding the source line (no columns: they would count JSON escapes)."""
    if finding.cell is not None:
        notebook = lines.notebook(finding.path)
        if notebook is None:
            return None, None, None, None
        start = notebook.file_line.get((finding.cell, finding.line))
        end = notebook.file_line.get((finding.cell, finding.end_line), start)
        return (start, end, None, None) if start else (None, None, None, None)
    if finding.line < 1:
        return None, None, None, None
    end_line = max(finding.end_line, finding.line)
    col = max(finding.column, 1)
    end_col = max(finding.end_column, col)
    return finding.line, end_line, col, end_col


def hidden_count(findings: list) -> int:
    """How many annotations GitHub will not show, keeping one notice slot for our own notice."""
    per_type = Counter(COMMAND.get(f.severity, "warning") for f in findings)
    hidden = sum(max(0, per_type[k] - PER_TYPE_LIMIT) for k in ("error", "warning"))
    if hidden or per_type["notice"] > PER_TYPE_LIMIT:
        hidden += max(0, per_type["notice"] - (PER_TYPE_LIMIT - 1))
    return hidden


def render(findings: list, ctx) -> str:
    """All annotations, worst first, then the overflow notice; appends the step summary."""
    ordered = worst_first(findings)
    lines = SourceLines(ctx.source_of)
    out = [annotate(f, ctx.cwd, lines) for f in ordered]
    hidden = hidden_count(ordered)
    if hidden:
        out.append(
            command(
                "notice",
                f"gradlint: {hidden} more finding{'s' if hidden != 1 else ''} were not annotated "
                f"(GitHub shows at most {PER_TYPE_LIMIT} per type per step); all {len(ordered)} are "
                "listed in this log and in the job summary",
            )
        )
    write_step_summary(ordered, ctx)
    return "\n".join(out) + ("\n" if out else "")


def write_step_summary(findings: list, ctx, path: Optional[str] = None) -> None:
    """Append a markdown table of the findings to $GITHUB_STEP_SUMMARY (when the runner set it)."""
    path = path or os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(summary_markdown(findings, ctx))
    except OSError:
        pass  # a summary is a courtesy; never fail the lint over it


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell: no HTML, no column breaks, no code spans."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    return text.replace("\r\n", "<br>").replace("\r", "<br>").replace("\n", "<br>")


def summary_markdown(findings: list, ctx) -> str:
    """The job-summary section: counts per rule, then every finding (up to SUMMARY_ROWS)."""
    files = getattr(ctx, "files_checked", 0)
    if not findings:
        return f"### gradlint\n\nNo findings in {files} file{'s' if files != 1 else ''}.\n\n"
    counts = Counter(f.code for f in findings)
    out = [
        "### gradlint",
        "",
        f"{len(findings)} finding{'s' if len(findings) != 1 else ''} in {files} "
        f"checked file{'s' if files != 1 else ''}.",
        "",
        "| code | rule | count |",
        "|---|---|---:|",
    ]
    for code in sorted(counts):
        name = RULES[code].name if code in RULES else code
        out.append(f"| {code} | {_cell(name)} | {counts[code]} |")
    out += ["", "| severity | location | code | message |", "|---|---|---|---|"]
    for f in findings[:SUMMARY_ROWS]:
        out.append(f"| {f.severity} | {_cell(location_text(f))} | {f.code} | {_cell(f.message)} |")
    if len(findings) > SUMMARY_ROWS:
        out.append(f"\n…and {len(findings) - SUMMARY_ROWS} more (see the log).")
    return "\n".join(out) + "\n\n"

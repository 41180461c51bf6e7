"""`--output-format gitlab`: GitLab Code Quality report (a JSON array of Code Climate issues).

    gradlint check --output-format gitlab -o gl-code-quality-report.json

GitLab collapses issues with equal fingerprints and compares fingerprints between the source and
target branch to say what a merge request introduced or fixed, so each finding's fingerprint is
unique within the report and contains no line number (rule, path, normalised line text and the
occurrence index). Paths are made relative to $CI_PROJECT_DIR when they lie under it.
"""

from __future__ import annotations

import json
import os

from gradlint.findings import RULES, Finding
from gradlint.fingerprint import SourceLines, occurrence_fingerprints, posix_path, printable_path

SEVERITY = {"error": "major", "warning": "minor", "note": "info"}


def report_path(path: str, cwd: str) -> str:
    """Repository-relative POSIX path: relative to $CI_PROJECT_DIR when the file lies under it."""
    project = os.environ.get("CI_PROJECT_DIR")
    if project:
        absolute = os.path.normpath(os.path.join(cwd, path))
        for base in (os.path.realpath(project), os.path.normpath(project)):
            try:
                relative = os.path.relpath(absolute, base)
            except ValueError:  # another drive on Windows
                continue
            if not relative.startswith(".."):
                return printable_path(posix_path(relative))
    return printable_path(posix_path(path))


def issue(finding: Finding, fingerprint: str, cwd: str, lines: SourceLines) -> dict:
    """One Code Quality issue. Notebook findings point at the .ipynb line of the cell's source
    line when the file is laid out by Jupyter (else line 1), and name the cell in the text."""
    begin, end = finding.line, max(finding.end_line, finding.line)
    where = ""
    if finding.cell is not None:
        where = f" (cell {finding.cell}, line {finding.line})"
        notebook = lines.notebook(finding.path)
        mapped = notebook.file_line if notebook else {}
        begin = mapped.get((finding.cell, finding.line), 1)
        end = max(mapped.get((finding.cell, finding.end_line), begin), begin)
    return {
        "type": "issue",
        "check_name": finding.code,
        "description": f"{finding.code} {finding.name}: {finding.message}{where}",
        "categories": [RULES[finding.code].gitlab_category if finding.code in RULES else "Bug Risk"],
        "severity": SEVERITY.get(finding.severity, "minor"),
        "fingerprint": fingerprint,
        "location": {"path": report_path(finding.path, cwd), "lines": {"begin": max(begin, 1), "end": max(end, 1)}},
    }


def render(findings: list, ctx) -> str:
    ordered = sorted(findings, key=lambda f: f.sort_key())
    lines = SourceLines(ctx.source_of)
    cwd = os.path.abspath(ctx.cwd)
    prints = occurrence_fingerprints(ordered, lines)
    issues = [issue(f, fp, cwd, lines) for f, fp in zip(ordered, prints)]
    return json.dumps(issues, indent=2) + "\n"

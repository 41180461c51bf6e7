"""`--output-format sarif`: SARIF 2.1.0 for GitHub code scanning (and any SARIF viewer).

One run, one `rules[]` entry per rule that ran (plus any rule a result refers to), each with
its descriptions and help taken from the rule page rules/GL00N.md. Result locations are
repo-relative URIs against `%SRCROOT%` so documents are relocatable and cacheable, and every
result carries a `gradlint/v1` partial fingerprint that does not contain the line number, so
code scanning keeps tracking an alert when unrelated lines above it move. A clean run is still
a complete document with `"results": []` (uploading it closes fixed alerts).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional
from urllib.parse import quote

import gradlint
from gradlint.findings import RULES, Finding, RuleInfo
from gradlint.fingerprint import SourceLines, occurrence_fingerprints, path_bytes, posix_path
from gradlint.pages import rule_page

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
DEFAULT_HOME = "https://github.com/gradlint/gradlint"
LEVEL = {"error": "error", "warning": "warning", "note": "note"}
PROBLEM_SEVERITY = {"error": "error", "warning": "warning", "note": "recommendation"}
MAX_TEXT = 1024  # GitHub's limit for short/full descriptions


def home_url() -> str:
    """The project's URL from the installed metadata (Project-URL), else the default."""
    try:
        from importlib.metadata import metadata

        for entry in metadata("gradlint").get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip().lower() in ("homepage", "repository", "source") and url.strip():
                return url.strip().rstrip("/")
    except Exception:  # not installed / broken metadata: fall back
        pass
    return DEFAULT_HOME


def page_section(page: str, title: str) -> str:
    """The body of the `## title` section of a rule page ('' when absent)."""
    match = re.search(rf"^##+\s*{re.escape(title)}\s*$(.*?)(?=^##?\s|\Z)", page, re.M | re.S | re.I)
    return match.group(1).strip() if match else ""


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def rule_descriptor(info: RuleInfo, home: str) -> dict:
    """The reportingDescriptor of one rule, with help from its page (or its summary)."""
    page = rule_page(info.code)
    what = page_section(page, "What it does") if page else ""
    why = page_section(page, "Why is this bad?") if page else ""
    full = _clip(" ".join(p for p in (what, why) if p) or info.summary)
    summary = info.summary[0].upper() + info.summary[1:] if info.summary else info.name
    help_md = page.strip() if page else f"{summary}.\n\nRun `gradlint explain {info.code}` for details."
    return {
        "id": info.code,
        "name": info.name,
        "shortDescription": {"text": _clip(summary)},
        "fullDescription": {"text": full},
        "help": {"text": _plain(help_md), "markdown": help_md},
        "helpUri": f"{home}/blob/main/rules/{info.code}.md",
        "defaultConfiguration": {"level": LEVEL.get(info.severity, "warning")},
        "properties": {
            "tags": list(info.tags),
            "precision": info.precision,
            "problem.severity": PROBLEM_SEVERITY.get(info.severity, "warning"),
        },
    }


def _plain(markdown: str) -> str:
    """Markdown made readable as plain text: headings, emphasis and link syntax dropped."""
    text = re.sub(r"^#+\s*", "", markdown, flags=re.M)
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 (\2)", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    return text


def file_uri(directory: str) -> str:
    """file:// URI of a directory, ending in '/' as SARIF base URIs must."""
    uri = Path(os.path.abspath(directory)).as_uri()
    return uri if uri.endswith("/") else uri + "/"


def artifact_location(path: str, cwd: str) -> dict:
    """Relative to %SRCROOT% (the working directory) when possible, else an absolute file URI."""
    if os.path.isabs(path):
        absolute = os.path.normpath(path)
        relative = os.path.relpath(absolute, cwd) if _same_drive(absolute, cwd) else ".."
        if relative.startswith(".."):
            return {"uri": Path(absolute).as_uri()}
        path = relative
    path = posix_path(os.path.normpath(path))
    if path.startswith("../"):
        return {"uri": Path(os.path.normpath(os.path.join(cwd, path))).as_uri()}
    # percent-encode the name's bytes: a name that is not UTF-8 keeps its exact bytes (%E9)
    return {"uri": quote(path_bytes(path), safe="/"), "uriBaseId": "%SRCROOT%"}


def _same_drive(a: str, b: str) -> bool:
    return os.path.splitdrive(a)[0].lower() == os.path.splitdrive(b)[0].lower()


def region(finding: Finding, lines: SourceLines) -> Optional[dict]:
    """The finding's region in the artifact; for a notebook cell, the .ipynb line holding it."""
    if finding.cell is not None:
        notebook = lines.notebook(finding.path)
        start = notebook.file_line.get((finding.cell, finding.line)) if notebook else None
        if not start:
            return None
        end = notebook.file_line.get((finding.cell, finding.end_line), start)
        return {"startLine": start, "endLine": max(end, start)}
    if finding.line < 1:
        return None
    start_col = max(finding.column, 1)
    end_line = max(finding.end_line, finding.line)
    end_col = max(finding.end_column, 1)
    if end_line == finding.line:
        end_col = max(end_col, start_col)
    return {"startLine": finding.line, "startColumn": start_col, "endLine": end_line, "endColumn": end_col}


def _offset_to_position(text: str, offset: int) -> tuple:
    """1-based (line, column) of a character offset, counting \\n, \\r\\n and \\r as breaks."""
    before = text[:offset]
    line = 1 + before.count("\n") + before.count("\r") - before.count("\r\n")
    start = max(before.rfind("\n"), before.rfind("\r")) + 1
    return line, offset - start + 1


def fixes(finding: Finding, location: dict, lines: SourceLines) -> Optional[list]:
    """SARIF `fixes[]` for a fixable finding: character-offset replacements in the file."""
    if finding.fix is None or finding.cell is not None:
        return None
    text = lines.text(finding.path)
    replacements = []
    for edit in finding.fix.edits:
        deleted: dict = {"charOffset": edit.start, "charLength": max(edit.end - edit.start, 0)}
        if text is not None and 0 <= edit.start <= edit.end <= len(text):
            start_line, start_col = _offset_to_position(text, edit.start)
            end_line, end_col = _offset_to_position(text, edit.end)
            deleted.update(startLine=start_line, startColumn=start_col, endLine=end_line, endColumn=end_col)
        replacements.append({"deletedRegion": deleted, "insertedContent": {"text": edit.text}})
    return [
        {
            "description": {"text": finding.fix.description},
            "artifactChanges": [{"artifactLocation": dict(location), "replacements": replacements}],
        }
    ]


def result(finding: Finding, index: int, fingerprint: str, cwd: str, lines: SourceLines) -> dict:
    """One SARIF result."""
    location = artifact_location(finding.path, cwd)
    physical: dict = {"artifactLocation": location}
    where = region(finding, lines)
    if where:
        physical["region"] = where
    message = finding.message
    if finding.cell is not None:
        message = f"{message} (cell {finding.cell}, line {finding.line})"
    out: dict = {
        "ruleId": finding.code,
        "ruleIndex": index,
        "level": LEVEL.get(finding.severity, "warning"),
        "message": {"text": message},
        "locations": [{"physicalLocation": physical}],
        "partialFingerprints": {"gradlint/v1": fingerprint},
    }
    properties: dict = {}
    if finding.cell is not None:
        properties.update(cell=finding.cell, cellLine=finding.line, cellColumn=finding.column)
    if finding.runtime is not None or not finding.static:
        properties.update(runtime=finding.runtime, evidence=finding.evidence, static=finding.static)
    if properties:
        out["properties"] = properties
    suggested = fixes(finding, location, lines)
    if suggested:
        out["fixes"] = suggested
    return out


def document(findings: list, ctx) -> dict:
    """The SARIF log as a dict."""
    home = home_url()
    cwd = os.path.abspath(ctx.cwd)
    rules = list(ctx.rules)
    known = {r.code for r in rules}
    for f in findings:  # a result must reference a rule in rules[]
        if f.code not in known:
            rules.append(RULES.get(f.code) or RuleInfo(f.code, f.code, f.code, severity=f.severity, tags=("pytorch",)))
            known.add(f.code)
    index = {r.code: i for i, r in enumerate(rules)}
    lines = SourceLines(ctx.source_of)
    ordered = sorted(findings, key=lambda f: f.sort_key())
    prints = occurrence_fingerprints(ordered, lines)
    version = gradlint.__version__
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "gradlint",
                        "version": version,
                        "semanticVersion": version,
                        "informationUri": home,
                        "rules": [rule_descriptor(r, home) for r in rules],
                    }
                },
                "automationDetails": {"id": "gradlint/"},
                "columnKind": "unicodeCodePoints",
                "originalUriBaseIds": {"%SRCROOT%": {"uri": file_uri(cwd)}},
                "invocations": [{"executionSuccessful": True, "workingDirectory": {"uri": file_uri(cwd)}}],
                "results": [result(f, index[f.code], fp, cwd, lines) for f, fp in zip(ordered, prints)],
            }
        ],
    }


def render(findings: list, ctx) -> str:
    # ASCII-only JSON: safe whatever encoding the terminal or CI log uses.
    return json.dumps(document(findings, ctx), indent=2) + "\n"

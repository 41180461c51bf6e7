"""Location-independent identities for findings, shared by SARIF, GitLab and baselines.

A finding's line number changes whenever someone edits code above it, so CI systems that track
alerts across commits need an identity that does not contain it. Ours is built from what the
finding is about: the rule, the file, and the text of the flagged line with its whitespace
normalised. Two identical flagged lines in one file are told apart by their order (occurrence
index), which also survives moves of unrelated code.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Iterable, Optional

from gradlint.findings import Finding
from gradlint.lines import split_lines

SourceOf = Callable[[str], Optional[str]]


def normalise(text: str) -> str:
    """The line's tokens separated by single spaces: indentation and spacing edits do not count."""
    return " ".join(text.split())


def digest(*parts: str, length: int = 32) -> str:
    """A hex digest of the parts (NUL-separated so that ("ab", "c") != ("a", "bc"))."""
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:length]


def printable_path(path: str) -> str:
    """`path` as valid Unicode for a report. A file name that is not UTF-8 reaches gradlint with
    surrogate escapes (PEP 383), which no UTF-8 writer, JSON parser or CI system accepts: each such
    byte is shown as `\\xNN` (any other lone surrogate as `\\udNNN`). Other paths are unchanged."""
    if not any("\ud800" <= ch <= "\udfff" for ch in path):
        return path
    out = []
    for ch in path:
        if "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif "\ud800" <= ch <= "\udfff":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def path_bytes(path: str) -> bytes:
    """The bytes of the file name `path` (surrogate escapes back to the original bytes), for URIs."""
    try:
        return path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogatepass")


def posix_path(path: str) -> str:
    """Display path with forward slashes (CI systems expect POSIX repo-relative paths)."""
    return path.replace(os.sep, "/") if os.sep != "/" else path


class SourceLines:
    """Reads the flagged line of a finding, caching each file's lines.

    For a notebook finding (`cell` set) the line is looked up inside that code cell.
    """

    def __init__(self, source_of: SourceOf) -> None:
        self._source_of = source_of
        self._lines: dict = {}
        self._notebooks: dict = {}

    def text(self, path: str) -> Optional[str]:
        try:
            return self._source_of(path)
        except (OSError, UnicodeError, ValueError):
            return None

    def lines(self, path: str) -> list:
        if path not in self._lines:
            text = self.text(path)
            self._lines[path] = split_lines(text) if text is not None else []
        return self._lines[path]

    def notebook(self, path: str):
        """The parsed notebook at `path`, or None when it cannot be read as one."""
        if path not in self._notebooks:
            from gradlint.notebook import NotebookError, parse_notebook  # only for .ipynb

            text = self.text(path)
            try:
                self._notebooks[path] = parse_notebook(text) if text is not None else None
            except NotebookError:
                self._notebooks[path] = None
        return self._notebooks[path]

    def line(self, finding: Finding) -> str:
        """The source text of the finding's first line ('' when unknown)."""
        if finding.cell is not None:
            notebook = self.notebook(finding.path)
            return notebook.cell_line(finding.cell, finding.line) if notebook else ""
        lines = self.lines(finding.path)
        if 1 <= finding.line <= len(lines):
            return lines[finding.line - 1]
        return ""


def occurrence_fingerprints(
    findings: Iterable[Finding], lines: SourceLines, *, length: int = 32
) -> list:
    """One fingerprint per finding (same order): hash of code, path, normalised line text and the
    finding's index among findings sharing those three, counted in source order.
    """
    findings = list(findings)
    keyed = [(f.code, posix_path(f.path), normalise(lines.line(f))) for f in findings]
    order = sorted(range(len(findings)), key=lambda i: (findings[i].cell or 0, findings[i].line, findings[i].column, i))
    seen: dict = {}
    index = [0] * len(findings)
    for i in order:
        index[i] = seen.get(keyed[i], 0)
        seen[keyed[i]] = index[i] + 1
    return [digest(*keyed[i], str(index[i]), length=length) for i in range(len(findings))]

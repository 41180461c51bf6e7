"""Baselines: adopt gradlint on an existing codebase and fail only on findings added since.

    gradlint check --write-baseline .gradlint-baseline.json   # record today's findings
    gradlint check --baseline .gradlint-baseline.json         # report only new ones

A baseline counts findings per key = (path, rule code, fingerprint of the flagged line's
normalised text and its enclosing function's qualified name). A finding is new when its key has
more findings today than the baseline recorded; keys whose count went down are reported as fixed.

What the key is made of, and why:
- No line numbers: editing code above a finding moves it without making it new.
- The path is relative to the project root of the baseline file: the nearest folder at or above
  the baseline's own folder that holds a pyproject.toml or .git, else the baseline's folder
  (files outside it are keyed by absolute path). So the keys do not depend on the folder gradlint
  runs from: `cd sub && gradlint check . --write-baseline b.json` and, from the parent,
  `gradlint check sub --baseline sub/b.json` agree.
- The line text is taken as it reads once every available automatic fix (the fixes `--fix`
  applies) has been applied. `--fix` of one finding (GL002 dropping `retain_graph=True`) then
  leaves the key of another finding on that line (a baselined GL001 on the same call) unchanged:
  before the fix its key already used the fixed text, after the fix the text is the same.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional

import gradlint
from gradlint.atomic import write_atomic
from gradlint.findings import Finding
from gradlint.fingerprint import SourceLines, digest, normalise, posix_path, printable_path
from gradlint.lines import line_starts

FORMAT_VERSION = 2  # 2: paths relative to the project root, line text after automatic fixes
SourceOf = Callable[[str], Optional[str]]


class BaselineError(Exception):
    """The baseline file cannot be read or written (one-line message for the CLI)."""


@dataclass(frozen=True)
class BaselineStats:
    recorded: int  # findings the baseline file lists
    matched: int  # findings today that the baseline covers
    fixed: int  # recorded findings that are gone
    new: int  # findings today beyond the baseline

    def describe(self) -> str:
        return f"{self.matched} finding{'s' if self.matched != 1 else ''} in baseline, {self.fixed} fixed since"


def _scopes(source: str) -> list:
    """(first line, last line, qualified name) of every function and class in a Python source."""
    import libcst as cst
    from libcst.metadata import MetadataWrapper, PositionProvider

    class Scopes(cst.CSTVisitor):
        METADATA_DEPENDENCIES = (PositionProvider,)

        def __init__(self) -> None:
            self.stack: list = []
            self.found: list = []

        def _enter(self, node) -> None:
            self.stack.append(node.name.value)
            where = self.get_metadata(PositionProvider, node)
            self.found.append((where.start.line, where.end.line, ".".join(self.stack)))

        def visit_FunctionDef(self, node) -> None:
            self._enter(node)

        def leave_FunctionDef(self, original_node) -> None:
            self.stack.pop()

        def visit_ClassDef(self, node) -> None:
            self._enter(node)

        def leave_ClassDef(self, original_node) -> None:
            self.stack.pop()

    try:
        visitor = Scopes()
        MetadataWrapper(cst.parse_module(source)).visit(visitor)
        return visitor.found
    except Exception:  # unparsable (GL000) or LibCST trouble: no scopes, key stays usable
        return []


class _Qualnames:
    """Enclosing-function lookup, parsing each file (once) only when it has a finding."""

    def __init__(self, lines: SourceLines) -> None:
        self.lines = lines
        self._scopes: dict = {}
        self._program_line: dict = {}

    def _load(self, path: str) -> None:
        text = self.lines.text(path)
        if text is not None and path.endswith(".ipynb"):
            notebook = self.lines.notebook(path)
            text = notebook.program if notebook else None
            if notebook:
                self._program_line[path] = {at: n for n, at in enumerate(notebook.origin, start=1)}
        self._scopes[path] = _scopes(text) if text is not None else []

    def of(self, finding: Finding) -> str:
        if finding.path not in self._scopes:
            self._load(finding.path)
        line = finding.line
        if finding.cell is not None:
            line = self._program_line.get(finding.path, {}).get((finding.cell, finding.line), 0)
        best = ""
        best_span = None
        for first, last, name in self._scopes[finding.path]:
            if first <= line <= last and (best_span is None or last - first < best_span):
                best, best_span = name, last - first
        return best


def project_root(baseline_path: str) -> str:
    """The folder baseline keys are relative to (see the module docstring)."""
    folder = os.path.dirname(os.path.abspath(baseline_path))
    here = folder
    while True:
        if os.path.exists(os.path.join(here, "pyproject.toml")) or os.path.exists(os.path.join(here, ".git")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return folder
        here = parent


def key_path(path: str, root: Optional[str]) -> str:
    """A finding's (display) path as written in keys: relative to `root` when under it."""
    if root is None:
        return printable_path(posix_path(path))
    full = os.path.abspath(path)
    try:
        rel = os.path.relpath(full, root)
    except ValueError:  # another drive on Windows
        rel = full
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        rel = full
    return printable_path(posix_path(rel))


class _FixedLines:
    """A file's lines as they read after every automatic fix of its findings is applied."""

    def __init__(self, lines: SourceLines, findings: list) -> None:
        self.lines = lines
        self._fixable: dict = {}  # path -> its findings whose fix plain `--fix` would apply
        for f in findings:
            # safe fixes only: unsafe ones need a flag, so they do not change the key
            if f.cell is None and f.fix is not None and f.fix.edits and f.fix.applicability == "safe":
                self._fixable.setdefault(f.path, []).append(f)
        self._files: dict = {}

    def _prepare(self, path: str):
        """(line starts of the file, the edits --fix would make, the fixed text), once per file."""
        from gradlint.fixes import apply_edits, choose_fixes

        if path not in self._files:
            text = self.lines.text(path)
            edits = choose_fixes(text, self._fixable[path])[0] if text is not None else []
            chosen = [(e.start, e.end, e.text) for e in edits]
            fixed = apply_edits(text or "", edits)
            self._files[path] = (line_starts(text) if text is not None else [], chosen, fixed)
        return self._files[path]

    def line(self, finding: Finding) -> str:
        if finding.cell is not None or finding.path not in self._fixable:
            return self.lines.line(finding)
        starts, edits, fixed = self._prepare(finding.path)
        if fixed is None or not 1 <= finding.line <= len(starts):
            return self.lines.line(finding)
        begin = starts[finding.line - 1]
        shift = 0
        for start, end, new in edits:
            if end <= begin:  # before the line (an insertion at its start included)
                shift += len(new) - (end - start)
            elif start < begin:  # the line starts inside an edited span: use it as it is
                return self.lines.line(finding)
        at = begin + shift
        stop = re.compile(r"\r|\n").search(fixed, at)
        return fixed[at:stop.start() if stop else len(fixed)]


def finding_keys(findings: list, source_of: SourceOf, root: Optional[str] = None) -> list:
    """The baseline key of each finding (same order); paths relative to `root` (see
    `project_root`) when given, else as displayed."""
    lines = SourceLines(source_of)
    fixed = _FixedLines(lines, findings)
    qualnames = _Qualnames(lines)
    keys = []
    for f in findings:
        text = normalise(fixed.line(f))
        keys.append(f"{key_path(f.path, root)}::{f.code}::{digest(text, qualnames.of(f), length=16)}")
    return keys


def write_baseline(findings: list, source_of: SourceOf, path: str) -> int:
    """Record the findings' counts per key in `path` (atomically); returns how many were recorded."""
    counts = Counter(finding_keys(findings, source_of, project_root(path)))
    payload = {
        "version": FORMAT_VERSION,
        "generated_by": f"gradlint {gradlint.__version__}",
        "findings": dict(sorted(counts.items())),
    }
    try:
        write_atomic(os.path.abspath(path), (json.dumps(payload, indent=2) + "\n").encode("utf-8"))
    except OSError as exc:
        raise BaselineError(f"cannot write baseline {path}: {exc.strerror or exc}") from None
    return sum(counts.values())


def read_baseline(path: str) -> Counter:
    """The recorded counts per key; BaselineError when missing or malformed."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise BaselineError(f"baseline {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("findings"), dict):
        raise BaselineError(f"baseline {path} has no 'findings' table (write one with --write-baseline)")
    if data.get("version") == 1:
        raise BaselineError(f"baseline {path} was written by an older gradlint (format 1, keyed from the "
                            f"current folder); write it again with --write-baseline")
    if data.get("version") != FORMAT_VERSION:
        raise BaselineError(f"baseline {path} has version {data.get('version')!r}; "
                            f"this gradlint reads {FORMAT_VERSION}")
    counts: Counter = Counter()
    for key, count in data["findings"].items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise BaselineError(f"baseline {path}: count for {key!r} is not a non-negative integer")
        counts[key] = count
    return counts


def filter_new(findings: list, source_of: SourceOf, path: str, checked: Optional[set] = None) -> tuple:
    """(findings not covered by the baseline at `path`, BaselineStats). Within a key the first
    recorded-count findings in source order are the old ones. `checked` (display paths of the
    files linted) limits "fixed" to those files, so linting a few files (pre-commit) does not
    count every other file's recorded findings as fixed."""
    recorded = read_baseline(path)
    ordered = sorted(findings, key=lambda f: f.sort_key())
    seen: Counter = Counter()
    new = []
    root = project_root(path)
    for finding, key in zip(ordered, finding_keys(ordered, source_of, root)):
        seen[key] += 1
        if seen[key] > recorded.get(key, 0):
            new.append(finding)
    matched = len(ordered) - len(new)
    linted = {key_path(p, root) for p in checked} if checked is not None else None
    fixed = sum(
        max(0, count - seen.get(key, 0))
        for key, count in recorded.items()
        if linted is None or key.rsplit("::", 2)[0] in linted
    )
    return new, BaselineStats(recorded=sum(recorded.values()), matched=matched, fixed=fixed, new=len(new))

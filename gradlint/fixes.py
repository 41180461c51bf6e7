"""Fixes and rewrites of a user's file: applying rules' fix edits (`--fix`) and adding
`# noqa` directives (`--add-noqa`).

A rewrite happens only if the new text still parses, atomically (temp file + os.replace), through
symlinks, keeping the file's permissions, encoding, BOM and line endings. Notebooks are not
rewritten (edits are not mapped back into cells).
"""

from __future__ import annotations

import codecs
import io
import os
import stat as stat_module
import tokenize
from typing import Callable, Dict, Iterable, List, Tuple

from gradlint.findings import RULES, Finding
from gradlint.source import DecodeProblem, decode_source, libcst_parse



def apply_fixes(text: str, findings: Iterable[Finding]) -> Tuple[str, int]:
    """Apply the fixes of fixable findings to `text`; edits that overlap an earlier fix are
    skipped (a later run picks them up). Returns (new text, number of findings fixed)."""
    chosen: List[Finding] = []
    taken: List[Tuple[int, int]] = []
    for finding in sorted(findings, key=Finding.sort_key):
        info = RULES.get(finding.code)
        if finding.fix is None or info is None or not info.fixable or not finding.fix.edits:
            continue
        spans = [(e.start, e.end) for e in finding.fix.edits]
        if any(not (0 <= s <= e <= len(text)) for s, e in spans):
            continue
        if any(s < te and ts < e or (s == e == ts == te) for s, e in spans for ts, te in taken):
            continue
        chosen.append(finding)
        taken.extend(spans)
    edits = sorted((e for f in chosen if f.fix is not None for e in f.fix.edits),
                   key=lambda e: (e.start, e.end), reverse=True)
    for edit in edits:
        text = text[: edit.start] + edit.text + text[edit.end:]
    return text, len(chosen)


def fix_file(path: str, findings: Iterable[Finding]) -> int:
    """Apply fixes to the file at `path` in place: atomically (temp file + os.replace, keeping
    its permissions and encoding) and only if the fixed text still parses. Returns the number of
    findings fixed; raises ValueError when the fixed text would not parse, OSError on I/O."""
    findings = list(findings)
    return rewrite_file(path, lambda text: apply_fixes(text, findings), "fixed")


def add_noqa_file(path: str, findings: Iterable[Finding]) -> int:
    """Add `# noqa: CODES` to the lines of `findings` in the file at `path` (as rewrite_file
    writes); returns the number of lines that got a directive."""
    findings = list(findings)
    return rewrite_file(path, lambda text: add_noqa(text, findings), "annotated")


def rewrite_file(path: str, change: Callable[[str], Tuple[str, int]], what: str) -> int:
    """Rewrite a Python file with `change(text) -> (new text, count)`: only if the new text still
    parses, atomically (temp file in the same folder + os.replace, so a crash never leaves half a
    file), through symlinks, keeping the file's permissions, encoding, BOM and line endings."""
    from gradlint.atomic import write_atomic
    from gradlint.notebook import is_notebook

    if is_notebook(path):
        return 0  # notebooks: edits are not mapped back into cells
    target = os.path.realpath(path)  # write through a symlink, do not replace the link
    with open(target, "rb") as handle:
        data = handle.read()
    try:
        text, encoding = decode_source(data)
    except DecodeProblem as problem:
        raise ValueError(problem.message) from None
    new_text, count = change(text)
    if not count or new_text == text:
        return 0
    import libcst

    try:
        libcst_parse(new_text)
    except (libcst.ParserSyntaxError, RecursionError) as err:
        raise ValueError(f"the {what} code would not parse ({' '.join(str(err).split())[:200]})") from None
    if data.startswith(codecs.BOM_UTF8) and encoding != "utf-8-sig":
        encoding = "utf-8-sig"
    write_atomic(target, new_text.encode(encoding), mode=stat_module.S_IMODE(os.stat(target).st_mode))
    return count


def add_noqa(text: str, findings: Iterable[Finding]) -> Tuple[str, int]:
    """`# noqa: CODES` at the end of each line where a finding starts (ruff's --add-noqa):
    merged into an existing `# noqa: ...` on that line, else appended after the code (and after
    any comment). Lines that end inside a string or with a backslash are left alone, and codes the
    engine reports itself (parse errors, unused noqa) are never annotated. Returns (new text,
    number of lines changed)."""
    from gradlint import suppression

    wanted: Dict[int, set] = {}
    for finding in findings:
        rule = RULES.get(finding.code)
        if (rule is not None and rule.role is not None) or finding.cell is not None:
            continue
        wanted.setdefault(finding.line, set()).add(finding.code)
    if not wanted:
        return text, 0
    lines = text.splitlines(keepends=True)
    inside_string = _lines_ending_in_strings(text)
    marks = suppression.parse(text)
    changed = 0
    for number, codes in sorted(wanted.items()):
        if not 1 <= number <= len(lines) or number in inside_string:
            continue
        line = lines[number - 1]
        body = line.rstrip("\r\n")
        ending = line[len(body):]
        if body.rstrip().endswith("\\"):
            continue
        existing = marks.inline.get(number, [])
        if any(d.codes is None for d in existing):
            continue  # a blanket noqa already covers the line
        if existing:
            directive = existing[0]
            merged = sorted(set(directive.codes or ()) | codes)
            start, end = directive.column - 1, directive.end_column - 1
            body = body[:start] + "# noqa: " + ", ".join(merged) + body[end:]
        else:
            body = body.rstrip() + "  # noqa: " + ", ".join(sorted(codes))
        lines[number - 1] = body + ending
        changed += 1
    return "".join(lines), changed


def _lines_ending_in_strings(text: str) -> set:
    """Line numbers whose end lies inside a (multi-line) string, f-strings included."""
    out: set = set()
    fstring_start = getattr(tokenize, "FSTRING_START", None)  # Python 3.12+ tokenizes f-strings
    fstring_end = getattr(tokenize, "FSTRING_END", None)
    open_fstrings: List[int] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                out.update(range(tok.start[0], tok.end[0]))
            elif fstring_start is not None and tok.type == fstring_start:
                open_fstrings.append(tok.start[0])
            elif fstring_end is not None and tok.type == fstring_end and open_fstrings:
                out.update(range(open_fstrings.pop(), tok.end[0]))
    except (tokenize.TokenError, SyntaxError):
        pass
    return out

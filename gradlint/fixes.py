"""Fixes and rewrites of a user's file: applying rules' fix edits (`--fix`) and adding
`# noqa` directives (`--add-noqa`).

Every change is a list of edits (character offsets into the decoded text). They are applied to
the file's *bytes*: the bytes between edits are copied unchanged (so an encoding whose round
trip is not exact, e.g. cp932, a BOM, line endings and everything outside the edit stay as they
were), and only the inserted text is encoded, in the file's own encoding. A rewrite happens only
if the new text still parses, and only onto the exact bytes the edits were computed from
(`gradlint.atomic.write_source` checks their SHA-256 under a lock; a file changed meanwhile is
recomputed from its new content or skipped with a message). Notebooks are not rewritten (edits
are not mapped back into cells).
"""

from __future__ import annotations

import codecs
import tokenize
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from gradlint.findings import RULES, Edit, Finding
from gradlint.source import DecodeProblem, decode_source

# A change: decoded text -> (edits, count of findings/lines handled, count of lines skipped).
Change = Callable[[str], Tuple[List[Edit], int, int]]
# Fresh findings for a file's current bytes (when it changed since it was linted).
Relint = Callable[[bytes], List[Finding]]

# How often a file that keeps changing under us is re-read before it is skipped.
ATTEMPTS = 3


class RewriteSkipped(ValueError):
    """Some lines could not be annotated (they end inside a string or with a backslash)."""


def choose_fixes(text: str, findings: Iterable[Finding]) -> Tuple[List[Edit], int]:
    """The edits of the fixable findings that apply to `text`: inside it, and not overlapping
    an earlier chosen fix (a later run picks those up). Returns (edits, number of findings)."""
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
    edits = [e for f in chosen if f.fix is not None for e in f.fix.edits]
    return sorted(edits, key=lambda e: (e.start, e.end)), len(chosen)


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    """`text` with non-overlapping `edits` applied."""
    for edit in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        text = text[: edit.start] + edit.text + text[edit.end:]
    return text


def apply_fixes(text: str, findings: Iterable[Finding]) -> Tuple[str, int]:
    """Apply the fixes of fixable findings to `text` (see `choose_fixes`). Returns (new text,
    number of findings fixed)."""
    edits, count = choose_fixes(text, findings)
    return apply_edits(text, edits), count


def edit_bytes(data: bytes, edits: Sequence[Edit]) -> Tuple[bytes, str]:
    """(new bytes, new text) of Python source `data` with `edits` (offsets into its decoded text)
    applied: bytes outside the edits are kept as they are; the edits' text is encoded in the
    file's encoding. Raises ValueError when the file cannot be decoded or an edit's text cannot
    be encoded in the file's encoding."""
    try:
        text, encoding = decode_source(data)
    except DecodeProblem as problem:
        raise ValueError(problem.message) from None
    prefix = codecs.BOM_UTF8 if data.startswith(codecs.BOM_UTF8) else b""
    if codecs.lookup(encoding).name == "utf-8-sig":
        encoding = "utf-8"  # the BOM is kept as a prefix; "utf-8-sig" would add one per edit
    body = data[len(prefix):]
    ordered = sorted(edits, key=lambda e: (e.start, e.end))
    offsets = _byte_offsets(body, text, encoding, sorted({o for e in ordered for o in (e.start, e.end)}))
    parts = [prefix]
    done = 0
    for edit in ordered:
        parts.append(body[done:offsets[edit.start]])
        try:
            parts.append(edit.text.encode(encoding))
        except UnicodeEncodeError:
            raise ValueError(f"the new text cannot be written in the file's encoding ({encoding})") from None
        done = offsets[edit.end]
    parts.append(body[done:])
    return b"".join(parts), apply_edits(text, ordered)


def _byte_offsets(body: bytes, text: str, encoding: str, wanted: List[int]) -> Dict[int, int]:
    """Byte offset in `body` of each character offset in `wanted` (of `text`, its decoding)."""
    out: Dict[int, int] = {}
    if text.encode(encoding) == body:  # exact round trip (UTF-8, Latin-1, ...): encode prefixes
        done_chars = done_bytes = 0
        for offset in wanted:
            done_bytes += len(text[done_chars:offset].encode(encoding))
            done_chars = offset
            out[offset] = done_bytes
        return out
    # Not exact (several byte sequences decode to one character): count characters as the
    # bytes are decoded, one byte at a time.
    decoder = codecs.getincrementaldecoder(encoding)()
    pending = list(reversed(wanted))
    chars = 0
    for index in range(len(body) + 1):
        while pending and pending[-1] <= chars:
            out[pending.pop()] = index
        if index == len(body) or not pending:
            break
        chars += len(decoder.decode(body[index:index + 1]))
    for offset in pending:
        out[offset] = len(body)
    return out


def _parses(text: str) -> Optional[str]:
    """None when the new text parses (CPython first; LibCST only for text CPython accepts and
    the size guard admits), else why not."""
    from gradlint.source import admission_problem

    problem = admission_problem(text, "<fixed>")
    if problem is not None:
        return problem
    import libcst

    from gradlint.source import deep_call, libcst_parse

    try:
        deep_call(lambda: libcst_parse(text))
    except (libcst.ParserSyntaxError, RecursionError, MemoryError) as err:
        return " ".join(str(err).split())[:200]
    return None


def rewrite_file(path: str, change: Change, what: str, *, digest: Optional[str] = None,
                 relint: Optional[Callable[[bytes], Change]] = None) -> int:
    """Rewrite a Python file with `change(text) -> (edits, count, skipped)`, only onto the bytes
    the edits were computed from: `digest` is the SHA-256 of the bytes the caller linted (None:
    whatever the file holds now). If the file changed since (or changes while we compute),
    `relint(new bytes)` gives the change for the new content; without it the file is skipped
    with `SourceChanged`. Only if the new text parses; through symlinks; keeping encoding, BOM,
    line endings, links, owner and mode (see `gradlint.atomic.write_source`). Returns the count;
    raises ValueError (SourceChanged, would not parse, RewriteSkipped after writing), OSError."""
    from gradlint.atomic import SourceChanged, sha256, write_source
    from gradlint.notebook import is_notebook

    if is_notebook(path):
        return 0  # notebooks: edits are not mapped back into cells
    for _ in range(ATTEMPTS):
        with open(path, "rb") as handle:
            data = handle.read()
        current = sha256(data)
        if digest is not None and current != digest:
            if relint is None:
                raise SourceChanged("changed since it was linted; not modified")
            change = relint(data)
        digest = current
        try:
            text, _ = decode_source(data)
        except DecodeProblem as problem:
            raise ValueError(problem.message) from None
        edits, count, skipped = change(text)
        if not count or not edits:
            _raise_skipped(skipped)
            return 0
        new_data, new_text = edit_bytes(data, edits)
        if new_text == text:
            _raise_skipped(skipped)
            return 0
        why = _parses(new_text)
        if why is not None:
            raise ValueError(f"the {what} code would not parse ({why})")
        try:
            write_source(path, new_data, current)
        except SourceChanged:
            if relint is None:
                raise
            continue  # changed between our read and the write: recompute from the new bytes
        _raise_skipped(skipped, count)
        return count
    raise SourceChanged("keeps changing while being fixed; not modified")


def _raise_skipped(skipped: int, written: int = 0) -> None:
    if skipped:
        lines = f"{skipped} line{'s' if skipped != 1 else ''}"
        error = RewriteSkipped(f"{lines} not annotated: a noqa comment there would land inside a string "
                               f"or after a backslash continuation")
        error.written = written  # type: ignore[attr-defined]
        raise error


def fix_file(path: str, findings: Iterable[Finding], *, digest: Optional[str] = None,
             relint: Optional[Relint] = None) -> int:
    """Apply fixes to the file at `path` in place (see `rewrite_file`): `findings` were computed
    from the bytes with SHA-256 `digest`; `relint(bytes)` gives fresh findings if the file
    changed since. Returns the number of findings fixed; raises ValueError (changed and no
    relint, or the fixed text would not parse), OSError on I/O."""
    findings = list(findings)
    return rewrite_file(path, _fixing(findings), "fixed", digest=digest,
                        relint=None if relint is None else (lambda data: _fixing(relint(data))))


def _fixing(findings: List[Finding]) -> Change:
    def change(text: str) -> Tuple[List[Edit], int, int]:
        edits, count = choose_fixes(text, findings)
        return edits, count, 0

    return change


def add_noqa_file(path: str, findings: Iterable[Finding], *, digest: Optional[str] = None,
                  relint: Optional[Relint] = None) -> int:
    """Add `# noqa: CODES` to the lines of `findings` in the file at `path` (as rewrite_file
    writes); returns the number of lines that got a directive. Raises RewriteSkipped (a
    ValueError; `.written` lines were annotated) when some lines could not be annotated."""
    findings = list(findings)
    return rewrite_file(path, _annotating(findings), "annotated", digest=digest,
                        relint=None if relint is None else (lambda data: _annotating(relint(data))))


def _annotating(findings: List[Finding]) -> Change:
    def change(text: str) -> Tuple[List[Edit], int, int]:
        return noqa_edits(text, findings)

    return change


def add_noqa(text: str, findings: Iterable[Finding]) -> Tuple[str, int]:
    """`text` with `# noqa: CODES` added (see `noqa_edits`); returns (new text, lines changed)."""
    edits, count, _ = noqa_edits(text, findings)
    return apply_edits(text, edits), count


def noqa_edits(text: str, findings: Iterable[Finding]) -> Tuple[List[Edit], int, int]:
    """Edits adding `# noqa: CODES` at the end of each line where a finding starts (ruff's
    --add-noqa), lines numbered as Python's tokenizer numbers them: merged into an existing
    `# noqa: ...` on that line, else appended after the code (and after any comment). Lines
    that end inside a string or with a backslash are skipped (a comment there would change the
    program or not be a comment), and codes the engine reports itself (parse errors, unused
    noqa) are never annotated. Returns (edits, lines changed, lines skipped)."""
    from gradlint import suppression
    from gradlint.lines import line_starts, split_lines

    wanted: Dict[int, set] = {}
    for finding in findings:
        rule = RULES.get(finding.code)
        if (rule is not None and rule.role is not None) or finding.cell is not None:
            continue
        wanted.setdefault(finding.line, set()).add(finding.code)
    if not wanted:
        return [], 0, 0
    lines = split_lines(text)
    starts = line_starts(text)
    inside_string = _lines_ending_in_strings(text)
    marks = suppression.parse(text)
    edits: List[Edit] = []
    skipped = 0
    for number, codes in sorted(wanted.items()):
        if not 1 <= number <= len(lines):
            continue
        body = lines[number - 1]
        if number in inside_string or body.rstrip().endswith("\\"):
            skipped += 1
            continue
        existing = marks.inline.get(number, [])
        if any(d.codes is None for d in existing):
            continue  # a blanket noqa already covers the line
        start = starts[number - 1]
        if existing:
            directive = existing[0]
            merged = sorted(set(directive.codes or ()) | codes)
            edits.append(Edit(start + directive.column - 1, start + directive.end_column - 1,
                              "# noqa: " + ", ".join(merged)))
        else:
            code_end = len(body.rstrip())
            edits.append(Edit(start + code_end, start + len(body), "  # noqa: " + ", ".join(sorted(codes))))
    return edits, len(edits), skipped


def _lines_ending_in_strings(text: str) -> set:
    """Line numbers (as the tokenizer numbers them) whose end lies inside a (multi-line)
    string, f-strings included."""
    from gradlint.lines import tokenizer_readline

    out: set = set()
    fstring_start = getattr(tokenize, "FSTRING_START", None)  # Python 3.12+ tokenizes f-strings
    fstring_end = getattr(tokenize, "FSTRING_END", None)
    open_fstrings: List[int] = []
    try:
        for tok in tokenize.generate_tokens(tokenizer_readline(text)):
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                out.update(range(tok.start[0], tok.end[0]))
            elif fstring_start is not None and tok.type == fstring_start:
                open_fstrings.append(tok.start[0])
            elif fstring_end is not None and tok.type == fstring_end and open_fstrings:
                out.update(range(open_fstrings.pop(), tok.end[0]))
    except (tokenize.TokenError, SyntaxError):
        pass
    return out


__all__ = ["RewriteSkipped", "add_noqa", "add_noqa_file", "apply_edits", "apply_fixes", "choose_fixes",
           "edit_bytes", "fix_file", "noqa_edits", "rewrite_file"]

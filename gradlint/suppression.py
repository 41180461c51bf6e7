"""Suppression comments.

- `# noqa` (blanket) or `# noqa: GL001, GL002` in a comment on the line where a finding starts
  silences it (case-insensitive; codes separated by commas and/or spaces; prefixes allowed, so
  `# noqa: GL00` silences GL001-GL003).
- `# gradlint: noqa` on a line of its own silences the whole file; `# gradlint: noqa: GL001` only
  those codes in the whole file. (`# flake8: noqa` is deliberately NOT honoured: it usually
  targets flake8 and would silently switch gradlint off.)
- GL100 (unused-noqa, off by default) reports a `# noqa: GLxxx` whose gradlint codes silenced
  nothing. Blanket `# noqa` and other tools' codes (`E501`) are never reported: they may be
  meant for another linter.

Only comment tokens count, so `"# noqa"` inside a string does nothing. GL000 (parse error) is
never suppressed by comments (the file could not be tokenised reliably); ignore it in config.
"""

from __future__ import annotations

import re
import tokenize
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from gradlint.findings import RULES, Finding
from gradlint.lines import tokenizer_readline
from gradlint.rules import parse_error, unused_noqa

_CODE = r"[A-Za-z]+[0-9]+"
_INLINE = re.compile(rf"#\s*noqa(?::\s*(?P<codes>{_CODE}(?:[\s,]+{_CODE})*))?", re.IGNORECASE)
_FILE = re.compile(rf"^#\s*gradlint\s*[:=]\s*noqa(?:\s*:\s*(?P<codes>{_CODE}(?:[\s,]+{_CODE})*))?\s*$",
                   re.IGNORECASE)


@dataclass
class Directive:
    """One inline `# noqa` comment: where it is and what it names (None = blanket)."""

    line: int
    column: int  # 1-based column of the `#` that starts `noqa`
    end_column: int
    codes: Optional[Tuple[str, ...]]
    used: set = field(default_factory=set)

    def covers(self, code: str) -> Optional[str]:
        """The selector in this directive that matches `code` ("*" for blanket), or None."""
        if self.codes is None:
            return "*"
        for selector in self.codes:
            if code.startswith(selector):
                return selector
        return None


@dataclass
class Suppressions:
    inline: Dict[int, List[Directive]]
    file_all: bool = False
    file_codes: Tuple[str, ...] = ()

    def file_suppresses(self, code: str) -> bool:
        return self.file_all or any(code.startswith(selector) for selector in self.file_codes)


def _split_codes(text: Optional[str]) -> Optional[Tuple[str, ...]]:
    if text is None:
        return None
    return tuple(part.upper() for part in re.split(r"[\s,]+", text.strip()) if part)


def _comments(text: str) -> Iterable[Tuple[int, int, str, bool]]:
    """(line, 0-based column, comment text, own line?) for every comment token."""
    reader = tokenizer_readline(text)  # lines as Python numbers them (not str.splitlines)
    try:
        for tok in tokenize.generate_tokens(reader):
            if tok.type == tokenize.COMMENT:
                own_line = not tok.line[: tok.start[1]].strip()
                yield tok.start[0], tok.start[1], tok.string, own_line
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return  # a file that parsed with LibCST but not the tokenizer: keep what we saw


def parse(text: str) -> Suppressions:
    """Find every suppression comment in a file's text."""
    found = Suppressions(inline={})
    if "noqa" not in text.lower():  # cheap: most files have none
        return found
    for line, column, comment, own_line in _comments(text):
        if own_line:
            whole = _FILE.match(comment)
            if whole:
                codes = _split_codes(whole.group("codes"))
                if codes is None:
                    found.file_all = True
                else:
                    found.file_codes += codes
                continue
        match = _INLINE.search(comment)
        if match:
            directive = Directive(
                line=line,
                column=column + match.start() + 1,
                end_column=column + match.end() + 1,
                codes=_split_codes(match.group("codes")),
            )
            found.inline.setdefault(line, []).append(directive)
    return found


def apply(findings: List[Finding], text: str, enabled: Iterable[str], path: str) -> List[Finding]:
    """Drop suppressed findings; add GL100 findings when GL100 is enabled."""
    enabled = set(enabled)
    unused_code, parse_code = unused_noqa().code, parse_error().code
    if not findings and unused_code not in enabled:
        return findings
    marks = parse(text)
    if not marks.inline and not marks.file_all and not marks.file_codes:
        return findings
    kept: List[Finding] = []
    for finding in findings:
        if finding.code == parse_code:
            kept.append(finding)
            continue
        if marks.file_suppresses(finding.code):
            continue
        silenced = False
        for directive in marks.inline.get(finding.line, ()):
            selector = directive.covers(finding.code)
            if selector is not None:
                directive.used.add(selector)
                silenced = True
        if not silenced:
            kept.append(finding)
    if unused_code in enabled and not marks.file_suppresses(unused_code):
        kept.extend(_unused(marks, enabled, path))
    return kept


def _unused(marks: Suppressions, enabled: set, path: str) -> List[Finding]:
    """GL100 findings: gradlint codes in `# noqa: ...` that silenced nothing."""
    out = []
    info = unused_noqa()
    for directives in marks.inline.values():
        for directive in directives:
            if directive.codes is None:
                continue
            unused = []
            for selector in directive.codes:
                if not selector.startswith("GL") or selector in directive.used:
                    continue
                known = [code for code in RULES if code.startswith(selector)]
                if not known:
                    unused.append(f"{selector} (unknown code)")
                elif any(code in enabled for code in known):
                    unused.append(selector)
            if unused:
                out.append(Finding(
                    code=info.code,
                    message=f"unused noqa directive for {', '.join(unused)}: nothing here is reported "
                            f"under that code; remove it",
                    path=path,
                    line=directive.line,
                    column=directive.column,
                    end_line=directive.line,
                    end_column=directive.end_column,
                    severity=info.severity,
                ))
    return out

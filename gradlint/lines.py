"""Line numbering as Python's tokenizer counts lines.

Only `\\n`, `\\r\\n` and a lone `\\r` end a line. `str.splitlines` also splits on form feed,
`\\x0b`, `\\x1c`-`\\x1e`, NEL (U+0085) and U+2028/U+2029, which Python treats as ordinary
characters (whitespace, or part of a comment or string); numbering lines with it puts reported
lines, excerpts and inserted `# noqa` comments on the wrong line. Everything that maps a line
number to text uses these helpers instead.
"""

from __future__ import annotations

import re
from typing import Callable, List

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def split_lines(text: str, keepends: bool = False) -> List[str]:
    """The lines of `text` as the tokenizer numbers them (line N is item N-1). A final line
    without an ending is included; an empty text has no lines."""
    lines = _LINE.findall(text)
    if keepends:
        return lines
    return [line.rstrip("\r\n") for line in lines]


def line_starts(text: str) -> List[int]:
    """The offset in `text` where each line starts (line N starts at item N-1)."""
    starts = [0]
    for match in re.finditer(r"\r\n|\r|\n", text):
        if match.end() < len(text):
            starts.append(match.end())
    return starts


def tokenizer_readline(text: str) -> Callable[[], str]:
    """A `readline` for `tokenize.generate_tokens` that yields the tokenizer's lines, each
    ending in `\\n` (a lone `\\r` would otherwise be a line the pure-Python tokenizer joins with
    the next). Columns are unchanged: only line endings are rewritten."""
    lines = iter(split_lines(text, keepends=True))

    def readline() -> str:
        line = next(lines, "")
        if line.endswith("\r\n"):
            return line[:-2] + "\n"
        if line.endswith("\r"):
            return line[:-1] + "\n"
        return line

    return readline

"""gitignore-style patterns (exclude, .gitignore files, per-file-ignores) compiled like git does.

pathspec raises on lines git silently ignores (`!` alone, a trailing backslash, a bad range such
as `[z-a].py`). In a `.gitignore` such a line is dropped, as git drops it; in gradlint's own
config it is a configuration error (see `invalid_pattern`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, List, Optional

if TYPE_CHECKING:  # imported where patterns are compiled: start-up stays lean
    import pathspec


def invalid_pattern(pattern: str) -> Optional[str]:
    """Why `pattern` is not a valid gitignore pattern (one line), or None when it is."""
    import pathspec

    try:
        pathspec.GitIgnoreSpec.from_lines([pattern])
    except Exception as err:  # pathspec's own errors and re.error from a bad character range
        return " ".join(str(err).split()) or type(err).__name__
    return None


def compile_lines(lines: Iterable[str]) -> "pathspec.GitIgnoreSpec":
    """A GitIgnoreSpec of `lines`, leaving out the lines git would ignore as invalid."""
    import pathspec

    lines = list(lines)
    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except Exception:  # some line is invalid: keep the others, in order
        valid: List[str] = [line for line in lines if invalid_pattern(line) is None]
        return pathspec.GitIgnoreSpec.from_lines(valid)

"""Source stage of the pipeline: bytes -> text, and whether the text parses (GL000).

- Bytes are decoded as Python does (PEP 263 coding cookie, UTF-8 BOM); a file that cannot be
  decoded gives one parse-error finding (the rule declared with role "parse-error").
- `syntax_check` decides whether a file parses without building a LibCST tree where it can
  (CPython's parser and symbol table first); only files CPython rejects are handed to LibCST, so
  the verdict matches what the analysis, which must parse with LibCST, would say.
LibCST is imported only when it is needed.
"""

from __future__ import annotations

import ast
import codecs
import io
import tokenize
from typing import Any, Optional, Tuple

from gradlint.findings import Finding
from gradlint.rules import parse_error


class DecodeProblem(Exception):
    """Bytes that are not Python source text: why, and where (1-based)."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def decode_source(data: bytes) -> Tuple[str, str]:
    """(text, encoding) of Python source bytes, honouring a BOM and a PEP 263 coding cookie."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as err:  # bad cookie, BOM with a non-UTF-8 cookie, or bad bytes up front
        message = str(getattr(err, "msg", err))
        if "invalid or missing encoding declaration" in message:
            encoding = "utf-8"  # no usable cookie: decode as UTF-8 below to name the bad byte
        else:
            raise DecodeProblem(f"cannot decode file: {message}") from None
    try:
        codecs.lookup(encoding)
        text = data.decode(encoding)
    except LookupError:
        raise DecodeProblem(f"cannot decode file: unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DecodeProblem(
            f"cannot decode file as {encoding}: invalid byte {data[err.start:err.start + 1]!r} "
            f"at line {line}, column {column}",
            line,
            column,
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, encoding


def gl000(path: str, message: str, line: int = 1, column: int = 1) -> Finding:
    """A parse-error finding (one line of message)."""
    rule = parse_error()
    return Finding(
        code=rule.code,
        message=" ".join(message.split()),
        path=path,
        line=max(line, 1),
        column=max(column, 1),
        end_line=max(line, 1),
        end_column=max(column, 1) + 1,
        severity=rule.severity,
    )


# ---------------------------------------------------------------------------------------------
# Syntax checks


def _python_syntax_error(text: str, path: str) -> Optional[Tuple[str, int, int]]:
    """CPython's own parser (fast, C): (message, line, column) of the first syntax error."""
    import warnings

    try:
        with warnings.catch_warnings():  # invalid escapes etc. are the user's business, not ours
            warnings.simplefilter("ignore")
            compile(text, path, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as err:
        return (f"{err.msg}", err.lineno or 1, err.offset or 1)
    except (ValueError, MemoryError, RecursionError, OverflowError) as err:  # null bytes, nesting
        return (f"{err}", 1, 1)
    return None


def libcst_parse(text: str) -> Any:
    """LibCST's tree of `text` (raises libcst.ParserSyntaxError)."""
    import libcst

    return libcst.parse_module(text)


def parse_error_of(err: BaseException, text: str, path: str) -> Finding:
    """GL000 for a LibCST ParserSyntaxError. CPython's message and position are clearer when its
    parser fails too ("'(' was never closed"), so prefer them; else the LibCST one."""
    python = _python_syntax_error(text, path)
    if python is not None:
        message, line, column = python
        return gl000(path, f"cannot parse: {message}", line, column)
    message = getattr(err, "message", None) or str(err)
    line = getattr(err, "raw_line", 1) or 1
    column = (getattr(err, "raw_column", 0) or 0) + 1
    return gl000(path, f"cannot parse: {message}", line, column)


def _symbols_build(text: str, path: str) -> bool:
    """Does CPython parse the file and build its symbol table? (A True implies its parser
    accepts the file; cheaper than `compile(..., PyCF_ONLY_AST)`, as no AST objects are made.)"""
    import symtable
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            symtable.symtable(text, path, "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError):
        return False
    return True


def syntax_check(text: str, path: str, compiled: bool = False) -> Optional[Finding]:
    """GL000 when the file does not parse, decided without building a LibCST tree where possible:
    CPython first (`compiled`: the caller already compiled it); only if it fails is LibCST asked
    (so the verdict matches files that are analysed, which LibCST must parse)."""
    if compiled or _symbols_build(text, path):
        return None
    if _python_syntax_error(text, path) is None:
        return None
    import libcst

    try:
        libcst_parse(text)
    except libcst.ParserSyntaxError as err:
        return parse_error_of(err, text, path)
    except (RecursionError, MemoryError) as err:
        return gl000(path, f"cannot parse: {type(err).__name__}")
    return None


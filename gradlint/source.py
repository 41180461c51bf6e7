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
import re
import threading
import tokenize
from typing import Any, Callable, Optional, Tuple, TypeVar

from gradlint.findings import Finding
from gradlint.rules import parse_error

T = TypeVar("T")
_DEEP_LOCK = threading.Lock()


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
        return (f"cannot parse: {err.msg}", err.lineno or 1, err.offset or 1)
    except ValueError as err:  # null bytes (before 3.12)
        return (f"cannot parse: {err}", 1, 1)
    except (MemoryError, RecursionError, OverflowError) as err:  # CPython's own nesting limits
        reason = str(err) or "nested too deeply for Python's parser"
        return (f"too large/deep to analyse: {reason} ({type(err).__name__})", 1, 1)
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
        return gl000(path, message, *_clamped(text, line, column))
    message = getattr(err, "message", None) or str(err)
    line = getattr(err, "raw_line", 1) or 1
    column = (getattr(err, "raw_column", 0) or 0) + 1
    return gl000(path, f"cannot parse: {message}", *_clamped(text, line, column))


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
    """GL000 when the file does not parse, decided by CPython (`compiled`: the caller already
    compiled it) and the size and depth guard (`admit`); LibCST is never asked, so it never
    sees input CPython rejects (its native parser can run out of stack on such input)."""
    if compiled:
        return None
    return admit(text, path, check_python=True)


# ---------------------------------------------------------------------------------------------
# The guard in front of LibCST
#
# Measured with LibCST 1.0.1 on CPython 3.11 (x86-64; benchmarks/bench_hostile.py, README):
# - memory: about 2.9 kB per token while parsing (torch's common_methods_invocations.py, 268k
#   tokens: 767 MB, 30 s; a 200k-element list, 400k tokens: 1.1 GB);
# - time grows with the square of expression depth: 1,000 chained `[0]` take 3.8 s, 2,990 take
#   97 s; 2,990 nested conditionals 13 s and 1.6 GB; CPython itself rejects depth above ~3,000
#   and brackets nested above 200 (on such input LibCST's parser overflows the C stack);
# - LibCST and the analysis recurse in Python: they run on a large thread stack with a raised
#   recursion limit (see `deep_call`), which takes depth 1,000 without error.

# Files larger than this are not analysed (GL000 "too large to analyse"); checked before any
# parser runs, CPython's included (a 68 MB generated file took 9.3 GB in its symbol table).
MAX_CHARS = 3_000_000
# Tokens (words and operator characters) LibCST may be handed: about 870 MB while parsing.
MAX_TOKENS = 300_000
# Expression depth (CPython AST levels) LibCST may be handed: about 1.5 s of parsing at most.
MAX_DEPTH = 1_000
# Lines at least this long are scanned for operator chains (deep expressions on one line).
# (Anchored at line starts: unanchored, the pattern is retried at every character of every
# line, 50 ms on a 460 kB file; the matches are the same, since each starts a line.)
_LONG_LINE = re.compile(r"(?<![^\r\n])[^\r\n]{1000,}")
_CHAIN_TOKEN = re.compile(r"[.(\[+\-*/%@&|^~<>]|\b(?:not|if|lambda|and|or|await)\b")
_STRING = re.compile(r"'[^'\\\r\n]*(?:\\.[^'\\\r\n]*)*'|\"[^\"\\\r\n]*(?:\\.[^\"\\\r\n]*)*\"")
_TOKEN = re.compile(r"\w+|[^\w\s]")


class TooLarge(Exception):
    """Text beyond what LibCST is handed (the message says which limit)."""


def size_problem(text: str) -> Optional[str]:
    """Why `text` is too large for any parse (None when it is not)."""
    if len(text) > MAX_CHARS:
        return f"too large to analyse: {len(text):,} characters (limit {MAX_CHARS:,})"
    return None


def guard_problem(text: str, path: str) -> Optional[str]:
    """Why `text`, which CPython accepts, must not be handed to LibCST (too many tokens, or
    expressions nested too deep), or None. Cheap for ordinary files: tokens are counted only in
    files with more characters than the token limit, and the depth is measured (with CPython's
    AST) only when a long line holds a long chain of operators."""
    problem = size_problem(text)
    if problem is not None:
        return problem
    if len(text) > MAX_TOKENS:
        tokens = len(_TOKEN.findall(text))
        if tokens > MAX_TOKENS:
            return f"too large to analyse: {tokens:,} tokens (limit {MAX_TOKENS:,})"
    for match in _LONG_LINE.finditer(text):
        line = _STRING.sub("''", match.group())
        if len(_CHAIN_TOKEN.findall(line)) > MAX_DEPTH // 2:
            depth = ast_depth(text, path)
            if depth is None or depth > MAX_DEPTH:
                shown = "over " + f"{MAX_DEPTH:,}" if depth is None else f"{depth:,}"
                return f"too deep to analyse: expressions nested {shown} levels (limit {MAX_DEPTH:,})"
            break
    return None


def ast_depth(text: str, path: str) -> Optional[int]:
    """The depth of CPython's AST of `text` (None when CPython cannot build it)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = compile(text, path, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError):
        return None
    best = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > best:
            best = depth
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return best


def admit(text: str, path: str, check_python: bool = True) -> Optional[Finding]:
    """GL000 when `text` must not be handed to LibCST: too large (before any parser runs),
    rejected by CPython (`check_python`; skip it when the caller already compiled the text), or
    too many tokens / too deep for LibCST. None: LibCST may parse it."""
    problem = size_problem(text)
    if problem is not None:
        return gl000(path, problem)
    if check_python and not _symbols_build(text, path):
        python = _python_syntax_error(text, path)
        if python is not None:
            message, line, column = python
            return gl000(path, message, *_clamped(text, line, column))
    problem = guard_problem(text, path)
    return gl000(path, problem) if problem is not None else None


def admission_problem(text: str, path: str) -> Optional[str]:
    """`admit`'s reason as text (None when LibCST may parse `text`)."""
    finding = admit(text, path)
    return None if finding is None else finding.message


def _clamped(text: str, line: int, column: int) -> Tuple[int, int]:
    """A CPython error position moved inside the file: CPython may point one line past the last
    (an unclosed block at the end), and numbers lines as its tokenizer does (lone `\r` ends a
    line), which is how gradlint numbers them too (gradlint.lines)."""
    from gradlint.lines import split_lines

    lines = split_lines(text)
    last = max(len(lines), 1)
    if line > last:
        line = last
        column = len(lines[-1]) + 1 if lines else 1
    return line, column


_LEADING_CONTINUATIONS = re.compile(r"(?:[ \t\f]*\\(?:\r\n|\r|\n))+")


def libcst_view(text: str) -> str:
    """The text LibCST is handed for `text`: the same characters at the same offsets, except
    that backslash continuation lines at the very start of the file become comment lines.
    LibCST folds such lines into the first statement and numbers every later line one too
    early; CPython counts them. (Kept only when CPython reads the changed text the same way.)"""
    match = _LEADING_CONTINUATIONS.match(text)
    if match is None:
        return text
    head = re.sub(r"\\(?=\r\n|\r|\n)", "#", match.group())
    view = head + text[match.end():]
    return view if _symbols_build(view, "<view>") else text


# Analysis and LibCST recurse in Python (and LibCST's parser natively) once per nesting level.
DEEP_STACK_BYTES = 512 * 1024 * 1024
DEEP_RECURSION_LIMIT = 30_000


def deep_call(function: Callable[[], T]) -> T:
    """`function()` on a thread with a large stack and a raised recursion limit, so that code
    the guard admits (depth up to MAX_DEPTH) never overflows; it runs in a copy of the caller's
    context (context variables keep their values); exceptions are re-raised here.
    Falls back to a plain call where the stack size cannot be set."""
    import sys
    import threading

    import contextvars

    outcome: dict = {}
    context = contextvars.copy_context()  # the caller's context variables (what the analysis collects)

    def target() -> None:
        try:
            outcome["value"] = context.run(function)
        except BaseException as err:  # handed back to the caller
            outcome["error"] = err

    with _DEEP_LOCK:
        old_limit = sys.getrecursionlimit()
        try:
            old_size = threading.stack_size(DEEP_STACK_BYTES)
        except (ValueError, RuntimeError):
            return function()
        try:
            thread = threading.Thread(target=target, name="gradlint-analysis")
            sys.setrecursionlimit(max(old_limit, DEEP_RECURSION_LIMIT))
            thread.start()
        finally:
            threading.stack_size(old_size)
        try:
            thread.join()
        finally:
            sys.setrecursionlimit(old_limit)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]

"""The lint engine: files -> source text -> analysis -> select/ignore/noqa -> sorted findings.

- Bytes are decoded as Python does (PEP 263 coding cookie, UTF-8 BOM); a file that cannot be
  decoded or parsed gives one GL000 finding and the other files are still linted.
- A text prefilter skips the LibCST parse for files that cannot hold a finding (see `needs_analysis`);
  such files still get a cheap syntax check, so GL000 is reported for every file asked about.
- `lint_files` runs serially for a handful of files and over a process pool otherwise; the output
  is sorted, so it is the same whatever the scheduling.
- With `use_cache`, per-file results are kept in a content-keyed cache (gradlint/cache.py).

An unexpected exception inside the analysis of one file is reported as an error naming the file
(the CLI exits 2 at the end) and never stops the other files.
"""

from __future__ import annotations

import ast
import codecs
import functools
import hashlib
import io
import os
import re
import stat as stat_module
import tokenize
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from gradlint.findings import RULES, Finding

# Below this many files a process pool costs more than it saves.
SERIAL_BELOW = 8

# Every GL001-GL003 finding needs a backward call (`.backward(`, `torch.autograd.backward`,
# `accelerator.backward`, `manual_backward`) or, for GL002 on torch.autograd.grad, a
# `retain_graph` keyword; a file without either word (and without a configured helper name or
# an imported project module that has one) cannot hold a finding.
PREFILTER_WORDS: Tuple[str, ...] = ("backward", "retain_graph")


class InternalError(Exception):
    """The analysis crashed on one file (a gradlint bug); carries the file and the cause."""

    def __init__(self, path: str, cause: BaseException) -> None:
        self.path = path
        self.cause = cause
        super().__init__(f"internal error while checking {path}: {type(cause).__name__}: {cause}")


@dataclass
class LintResult:
    findings: List[Finding] = field(default_factory=list)  # sorted by Finding.sort_key
    files_checked: int = 0
    errors: List[str] = field(default_factory=list)  # one line each: internal errors, unreadable files
    cache_hits: int = 0
    # display path -> the path the file was read from (for source excerpts and --fix)
    paths: Dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Paths


def display_path(path: str, cwd: Optional[str] = None) -> str:
    """Relative to `cwd` (POSIX separators) when the file lies under it, else as given."""
    cwd = os.path.abspath(cwd or os.getcwd())
    full = os.path.abspath(path)
    try:
        rel = os.path.relpath(full, cwd)
    except ValueError:
        return path
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return path
    return rel.replace(os.sep, "/")


# ---------------------------------------------------------------------------------------------
# Decoding


class DecodeProblem(Exception):
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
    return Finding(
        code="GL000",
        message=" ".join(message.split()),
        path=path,
        line=max(line, 1),
        column=max(column, 1),
        end_line=max(line, 1),
        end_column=max(column, 1) + 1,
        severity=RULES["GL000"].severity,
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


def _libcst_parse(text: str):
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
        _libcst_parse(text)
    except libcst.ParserSyntaxError as err:
        return parse_error_of(err, text, path)
    except (RecursionError, MemoryError) as err:
        return gl000(path, f"cannot parse: {type(err).__name__}")
    return None


# ---------------------------------------------------------------------------------------------
# Project helpers in other modules (prefilter and cache keys)
#
# A file with no `backward` of its own can still hold a GL001 when its loop calls a helper,
# defined in another module of the project, that runs the backward. The analysis resolves such
# helpers (gradlint.analysis.project); here the same resolution is approximated with regexes over
# import statements, without parsing: which project modules a file imports, under which local
# names, and which of those names it calls.

_FROM = re.compile(
    rb"^[ \t]*from[ \t]+(?P<module>\.*[\w.]*)[ \t]+import[ \t]+(?:\((?P<paren>[^)]*)\)|(?P<names>[^\n#;]*))",
    re.MULTILINE,
)
_IMPORT = re.compile(rb"^[ \t]*import[ \t]+(?P<modules>[^\n#;]+)", re.MULTILINE)
_DEF = re.compile(rb"^[ \t]*(?:async[ \t]+)?def[ \t]+(\w+)", re.MULTILINE)
_CALL = re.compile(rb"(?<![\w.])([A-Za-z_][\w.]*)[ \t]*\(")

# How far up from a file absolute imports are looked for (as gradlint.analysis.project does).
IMPORT_PARENTS = 4
# Re-export hops followed (`from .train import update` in a package __init__), as the analysis.
REEXPORT_HOPS = 3


def _module_files(base: str, dotted: str) -> List[str]:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        return [os.path.join(base, "__init__.py")]
    stem = os.path.join(base, *parts)
    return [stem + ".py", os.path.join(stem, "__init__.py")]


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@functools.lru_cache(maxsize=4096)
def _search_bases(here: str, root: str) -> List[str]:
    bases = []
    current = here
    for _ in range(IMPORT_PARENTS + 1):
        bases.append(current)
        parent = os.path.dirname(current)
        if current == root or parent == current:
            break
        current = parent
    return list(dict.fromkeys(bases + [root, os.path.join(root, "src")]))


def _resolve(spec: str, here: str, root: str) -> Optional[str]:
    """The project file of module `spec` (`pkg.mod`, `.mod`, `..`) imported from folder `here`."""
    key = (spec, here, root)
    if key not in _RESOLVED:
        _RESOLVED[key] = _resolve_uncached(spec, here, root)
    return _RESOLVED[key]


def _resolve_uncached(spec: str, here: str, root: str) -> Optional[str]:
    level = len(spec) - len(spec.lstrip("."))
    dotted = spec[level:]
    if level:
        base = here
        for _ in range(level - 1):
            base = os.path.dirname(base)
        bases = [base]
    elif dotted:
        # Like sys.path: the first base holding the top-level package is the one used.
        top = dotted.split(".")[0]
        bases = [b for b in _search_bases(here, root)
                 if _kind(os.path.join(b, top)) == "dir" or _kind(os.path.join(b, top + ".py")) == "file"][:1]
    else:
        return None
    for base in bases:
        for candidate in _module_files(base, dotted):
            if _inside(candidate, root) and _kind(candidate) == "file":
                return candidate
    return None


# Memos of the file system, cleared by each lint_files (files may come and go between runs).
_KINDS: Dict[str, Optional[str]] = {}  # path -> "dir" | "file" | None
_RESOLVED: Dict[tuple, Optional[str]] = {}  # (module spec, importing folder, root) -> file


def _kind(path: str) -> Optional[str]:
    """What is at `path`, memoised: import resolution asks about the same few paths very often."""
    if path not in _KINDS:
        try:
            mode = os.stat(path).st_mode
            _KINDS[path] = "dir" if stat_module.S_ISDIR(mode) else "file" if stat_module.S_ISREG(mode) else None
        except OSError:
            _KINDS[path] = None
    return _KINDS[path]


def _names(text: bytes) -> List[Tuple[str, str]]:
    """(imported name, local name) pairs of an import list `a as b, c`."""
    out = []
    for item in text.replace(b"\\", b" ").split(b","):
        words = item.split()
        if not words:
            continue
        try:
            name = words[0].decode("ascii")
            local = words[2].decode("ascii") if len(words) >= 3 and words[1] == b"as" else name
        except UnicodeDecodeError:
            continue
        out.append((name, local))
    return out


def import_bindings(data: bytes, path: str, root: Optional[str]) -> List[Tuple[str, str, str]]:
    """(project file, local name, remote name) for each name a file binds by importing from a
    module of the project under `root`. `remote` is a function (or submodule) name for
    `from m import f as local`, "*" for `from m import *`, and "" for a module bound by
    `import m as local` (its attributes are reached as `local.f`)."""
    if not root or path == "-" or b"import" not in data:
        return []
    root = os.path.abspath(root)
    here = os.path.dirname(os.path.abspath(path))
    out: List[Tuple[str, str, str]] = []
    for match in _FROM.finditer(data):
        try:
            spec = match.group("module").decode("ascii")
        except UnicodeDecodeError:
            continue
        target = _resolve(spec, here, root)
        for name, local in _names(match.group("paren") or match.group("names") or b""):
            sub = _resolve(f"{spec}.{name}" if spec.strip(".") else f"{spec}{name}", here, root) \
                if name != "*" else None
            if sub is not None:  # `from pkg import module`
                out.append((sub, local, ""))
            elif target is not None:
                out.append((target, local, name))
    for match in _IMPORT.finditer(data):
        for name, local in _names(match.group("modules")):
            target = _resolve(name, here, root)
            if target is not None:
                out.append((target, local, ""))
    me = os.path.abspath(path)
    return [b for b in out if b[0] != me]


def project_imports(data: bytes, path: str, root: Optional[str]) -> List[str]:
    """The project files `path` imports directly."""
    return sorted({target for target, _, _ in import_bindings(data, path, root)})


@functools.lru_cache(maxsize=64)
def _DEDENT(indent: int) -> "re.Pattern[bytes]":
    """A line that ends a body indented by more than `indent`: not blank, not a comment, and
    indented `indent` or less."""
    return re.compile(rb"\n(?![ \t]{%d})[ \t]*[^ \t\r\n#]" % (indent + 1))


@dataclass(frozen=True)
class _ModuleText:
    """What the helper search needs of one module: its functions' spans (by indentation: a body
    ends at the next non-blank line indented no deeper than its `def`; methods count under their
    own names, nested functions also in their outer body), whether each body names a prefilter
    word, and every call in the module by position."""

    sha: str
    functions: Dict[str, Tuple[int, int, bool]]  # name -> (start offset, end offset, names a word?)
    bindings: Tuple[Tuple[str, str, str], ...]
    data: bytes  # kept only for modules the helper search reached
    path: str = ""
    helpers: frozenset = frozenset()  # configured helper names
    # names of the functions whose compiled code may run a backward, once asked (None: the
    # module does not compile, so the word in the text decides)
    _running: list = field(default_factory=list, compare=False, repr=False)

    def calls_in(self, name: str) -> set:
        start, end, _ = self.functions[name]
        return {c.decode("ascii", "replace") for c in _CALL.findall(self.data, start, end)}

    def runs_backward(self, name: str) -> bool:
        """May function `name` run a backward? Its text must name a prefilter word and, where
        the module compiles, its code must use one (stage two, as for files: a word in a
        docstring or comment, or `def backward` itself, runs nothing). Compiled on first ask."""
        if not self.functions[name][2]:
            return False
        if not self._running:
            mentioning = {n for n, (_, _, mentions) in self.functions.items() if mentions}
            self._running.append(_functions_running_backward(self.data, self.path, mentioning, set(self.helpers)))
        running = self._running[0]
        return running is None or name in running


def _module_text(data: bytes, path: str, root: str, words: Tuple[bytes, ...]) -> _ModuleText:
    functions: Dict[str, Tuple[int, int, bool]] = {}
    for match in _DEF.finditer(data):
        line_start = data.rfind(b"\n", 0, match.start()) + 1
        indent = match.start(1) - line_start - len(data[line_start:match.start(1)].lstrip())
        after = _DEDENT(indent).search(data, match.end())
        end = after.start() + 1 if after else len(data)
        name = match.group(1).decode("ascii", "replace")
        mentions = any(data.find(w, match.start(), end) >= 0 for w in words)
        old = functions.get(name)
        if old is not None:  # same name twice (overloads, methods of two classes): union
            functions[name] = (min(old[0], match.start()), max(old[1], end), old[2] or mentions)
        else:
            functions[name] = (match.start(), end, mentions)
    return _ModuleText(
        sha=hashlib.sha256(data).hexdigest(),
        functions=functions,
        bindings=tuple(import_bindings(data, path, root)),
        data=data if functions else b"",
        path=path,
        helpers=frozenset(w.decode("utf-8", "replace") for w in words) - frozenset(PREFILTER_WORDS),
    )


class _ProjectFiles:
    """Per process: the `_ModuleText` of each project file reached, by path and stat (so edits
    are seen); file bytes are not kept. Also the last answers per linted file."""

    def __init__(self) -> None:
        self.memo: Dict[tuple, _ModuleText] = {}
        self.answers: Dict[tuple, Tuple[bool, List[str]]] = {}

    def facts(self, path: str, words: Tuple[bytes, ...], root: str) -> _ModuleText:
        try:
            st = os.stat(path)
            stamp: tuple = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = (None, None)
        key = (path, stamp, words, root)
        if key not in self.memo:
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                data = b""
            self.memo[key] = _module_text(data, path, root, words)
        return self.memo[key]

    @staticmethod
    def _targets(calls: Iterable[str], bindings) -> List[Tuple[str, str]]:
        """(module file, function name) for calls that go through import bindings."""
        wanted: List[Tuple[str, str]] = []
        calls = sorted(set(calls))
        for target, local, remote in bindings:
            if remote == "*":
                wanted += [(target, c) for c in calls if "." not in c]
            elif remote:
                if local in set(calls):
                    wanted.append((target, remote))
            else:  # a module: local.f(...)
                prefix = local + "."
                wanted += [(target, c[len(prefix):]) for c in calls
                           if c.startswith(prefix) and "." not in c[len(prefix):]]
        return wanted

    def _definition(self, target: str, name: str, words, root: str) -> Optional[Tuple[str, str]]:
        """Where `name` seen in module `target` is defined, following re-exports."""
        for _ in range(REEXPORT_HOPS + 1):
            module = self.facts(target, words, root)
            if name in module.functions:
                return target, name
            hop = next(((t, r) for t, l, r in module.bindings if l == name and r and r != "*"), None)
            if hop is None:
                return None
            target, name = hop
        return None

    def helpers(self, data: bytes, path: str, root: str, words: Tuple[bytes, ...]) -> Tuple[bool, List[str]]:
        """(does a project helper this file calls name a prefilter word, directly or through the
        helpers it calls in turn?, the modules visited on the way). Bounded: 64 functions."""
        key = (path, hash(data), len(data), words, root)
        if key in self.answers:
            return self.answers[key]
        bindings = import_bindings(data, path, root)
        calls = {m.group(1).decode("ascii", "replace") for m in _CALL.finditer(data)} if bindings else set()
        # Sorted throughout: the walk is bounded, so its order must not depend on hash seeds
        # (the visited modules go into cache keys, which must be the same in every run).
        todo = [d for d in (self._definition(t, n, words, root) for t, n in self._targets(calls, bindings)) if d]
        todo = sorted(set(todo), reverse=True)
        seen = set()
        found = False
        while todo and len(seen) < 64:
            where, name = todo.pop()
            if (where, name) in seen:
                continue
            seen.add((where, name))
            module = self.facts(where, words, root)
            if module.runs_backward(name):
                found = True
                continue
            inner = module.calls_in(name)
            more = []
            for call in inner:  # helpers of the helper: same module, or imported there
                short = call.rsplit(".", 1)[-1]
                if ("." not in call or call.startswith("self.")) and short in module.functions:
                    more.append((where, short))
            imported = (self._definition(t, n, words, root) for t, n in self._targets(inner, module.bindings))
            more += [d for d in imported if d]
            todo += sorted(set(more), reverse=True)
        me = os.path.abspath(path)
        answer = (found, sorted({m for m, _ in seen} - {me}))
        if len(self.answers) > 4096:
            self.answers.clear()
        self.answers[key] = answer
        return answer


_PROJECT = _ProjectFiles()


def _words(settings) -> Tuple[str, ...]:
    return PREFILTER_WORDS + tuple(getattr(settings, "helper_names", ()) or ())


# Stage two of the prefilter reads the names CPython's compiler records for a module's code:
# a backward call needs one of these among them (`x.backward`, `torch.autograd.backward`,
# `self.manual_backward`), and `torch.autograd.grad` needs `grad` plus the name `autograd`
# (every spelling that resolves to it imports or names torch.autograd: `_names_autograd`).
BACKWARD_NAMES = frozenset({"backward", "manual_backward"})
GRAD_NAME = "grad"


def _code_objects(code) -> List:
    """A code object and every code object nested in it (functions, classes, lambdas, ...)."""
    out = []
    todo = [code]
    while todo:
        code = todo.pop()
        out.append(code)
        todo.extend(c for c in code.co_consts if hasattr(c, "co_names"))
    return out


def _reads_name(code, name: str) -> bool:
    """Does `code` (not the code nested in it) do more with global/attribute/imported `name`
    than bind it? `def backward(ctx, grad)` in an autograd Function's class body only stores
    the name. When some name of `co_names` is used by no instruction, the compiler dropped
    code that used it (`if False:`), whose reads are unknown: then True."""
    import dis

    seen = set()
    for instruction in dis.get_instructions(code):
        value = instruction.argval
        if isinstance(value, str):
            if value == name and not instruction.opname.startswith(("STORE_", "DELETE_")):
                return True
            seen.add(value)
    return not set(code.co_names) <= seen


def _used_names(codes: List, candidates: Iterable[str]) -> set:
    """Those of `candidates` that some code object reads (see `_reads_name`)."""
    used = set()
    for name in candidates:
        if any(name in code.co_names and _reads_name(code, name) for code in codes):
            used.add(name)
    return used


def _all_names(codes: List) -> set:
    """Every name of the code objects: globals, attributes, imports, locals, cells, free."""
    names: set = set()
    for code in codes:
        names.update(code.co_names, code.co_varnames, code.co_cellvars, code.co_freevars)
    return names


def _compile_codes(text: str, path: str) -> Optional[List]:
    """The module's code objects as CPython compiles it; None when it does not compile."""
    import warnings

    try:
        with warnings.catch_warnings():  # invalid escapes etc. are the user's business, not ours
            warnings.simplefilter("ignore")
            code = compile(text, path, "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError):
        return None
    return _code_objects(code)


@functools.lru_cache(maxsize=1)
def _compiler_keeps_dead_names() -> bool:
    """Does this CPython record the names of code it never runs (`if False:`, `while 0:`)?
    3.10+ do; 3.9 drops them, so there a name missing from the code proves nothing (LibCST
    still sees such calls) and stage two stays off."""
    probe = ("if False:\n    a.n1()\nif 0:\n    a.n2()\nwhile False:\n    a.n3()\n"
             "if not __debug__:\n    a.n4()\nif True:\n    pass\nelse:\n    a.n5()\n")
    wanted = {"n1", "n2", "n3", "n4", "n5"}
    return _used_names(_compile_codes(probe, "<probe>") or [], wanted) == wanted


def compiled_prefilter(text: str, path: str, settings) -> Tuple[bool, bool]:
    """Stage two, for text that names a prefilter word: (may a finding be here?, did CPython
    compile it?). A finding needs a backward call, `torch.autograd.grad` or a configured helper
    among the names the code really uses; words only in docstrings, comments or `def backward`
    of autograd Functions do not count. A file CPython cannot compile (or a CPython that drops
    dead code's names) is analysed, as before, so LibCST decides."""
    codes = _compile_codes(text, path)
    if codes is None:
        return True, False
    if not _compiler_keeps_dead_names():
        return True, True
    helpers = set(getattr(settings, "helper_names", ()) or ())
    return _may_run_backward(codes, helpers, _names_autograd(codes)), True


def _names_autograd(codes: List) -> bool:
    """Does the code name torch.autograd at all (`torch.autograd.grad`, `from torch import
    autograd`, `from torch.autograd import grad`: an attribute, an imported name or a dotted
    module of an import)? Without it no call resolves to `torch.autograd.grad`."""
    return any(name == "autograd" or "autograd" in name.split(".")
               for code in codes for name in code.co_names)


def _may_run_backward(codes: List, helpers: set, autograd: bool) -> bool:
    """Do these code objects read a backward name, a configured helper (any name), or `grad`
    (when the module names torch.autograd: `autograd`)?"""
    if helpers & _all_names(codes):
        return True
    grad = (GRAD_NAME,) if autograd else ()
    return bool(_used_names(codes, tuple(BACKWARD_NAMES) + grad))


def _functions_running_backward(data: bytes, path: str, names: set, helpers: set) -> Optional[set]:
    """Those of the function `names` whose compiled code (any definition of that name, with
    the code nested in it) may run a backward (`_may_run_backward`); None when the module
    does not compile or this CPython drops dead code's names."""
    import warnings

    if not names or not _compiler_keeps_dead_names():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = compile(data, path, "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError):
        return None
    autograd = _names_autograd(_code_objects(module))
    out = set()
    for code in _code_objects(module):
        if code.co_name in names and code.co_name not in out:
            if _may_run_backward(_code_objects(code), helpers, autograd):
                out.add(code.co_name)
    return out


def needs_analysis(text: str, data: Optional[bytes], path: str, settings, enabled: Iterable[str]) -> bool:
    """False when no GL001-GL003 finding is possible (see `prefilter`)."""
    return prefilter(text, data, path, settings, enabled)[0]


def prefilter(text: str, data: Optional[bytes], path: str, settings, enabled: Iterable[str]) -> Tuple[bool, bool]:
    """(may a GL001-GL003 finding be here?, did CPython compile the text?). No finding is possible
    when the text names none of the prefilter words and no configured helper (or, stage two,
    its compiled code uses none of them), and none of the project functions it calls through its
    imports lives in a module that (itself or through a module it imports) names such a word --
    a backward run inside an imported helper is how a file with no `backward` of its own can
    still hold a GL001. GL100 also needs the files with a `noqa`."""
    words = _words(settings)
    compiled = False
    if any(word in text for word in words):
        possible, compiled = compiled_prefilter(text, path, settings)
        if possible:
            return True, compiled
    return _needs_analysis_beyond_words(text, data, path, settings, enabled), compiled


def _needs_analysis_beyond_words(text: str, data: Optional[bytes], path: str, settings,
                                 enabled: Iterable[str]) -> bool:
    """The GL100 and imported-helper reasons to analyse a file (see `prefilter`)."""
    words = _words(settings)
    if "GL100" in enabled and "noqa" in text.lower():
        return True
    root = getattr(settings, "root", None)
    if not root:
        return False
    if data is None:
        data = text.encode("utf-8", "surrogatepass")
    bwords = tuple(w.encode() for w in words)
    return _PROJECT.helpers(data, path, os.path.abspath(root), bwords)[0]


def helper_modules(data: bytes, path: str, settings) -> Dict[str, str]:
    """path -> sha256 of the project modules holding the helpers `path` calls (followed as the
    prefilter follows them). Recorded with cached results: a helper edited in another module
    can change this file's findings."""
    bwords = tuple(w.encode() for w in _words(settings))
    root = os.path.abspath(settings.root)
    return {m: _PROJECT.facts(m, bwords, root).sha for m in _PROJECT.helpers(data, path, root, bwords)[1]}


def dependency_digest(data: bytes, path: str, settings) -> str:
    """One hash over `helper_modules` (paths and contents)."""
    parts = [f"{m}\0{sha}" for m, sha in sorted(helper_modules(data, path, settings).items())]
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


_SHAS: Dict[tuple, str] = {}


def file_sha(path: str) -> Optional[str]:
    """sha256 of a file's bytes, memoised by (path, mtime, size); None when unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _SHAS:
        try:
            with open(path, "rb") as handle:
                _SHAS[key] = hashlib.sha256(handle.read()).hexdigest()
        except OSError:
            return None
    return _SHAS[key]


# ---------------------------------------------------------------------------------------------
# One file


def _rule_codes(enabled: Iterable[str]) -> List[str]:
    from gradlint.rules import RULE_MODULES

    return sorted(code for code in enabled if code in RULE_MODULES)


def analyse_text(text: str, path: str, settings, enabled: set, data: Optional[bytes] = None) -> List[Finding]:
    """Findings for decoded text (display `path`), before suppression. Raises InternalError."""
    codes = _rule_codes(enabled)
    possible, compiled = prefilter(text, data, path, settings, enabled) if codes else (False, False)
    if not possible:
        problem = syntax_check(text, path, compiled)
        return [problem] if problem is not None else []
    import libcst

    from gradlint.analysis import analyze

    try:
        return list(analyze(text, path, settings.analysis_options, codes=codes))
    except libcst.ParserSyntaxError as err:
        return [parse_error_of(err, text, path)]
    except RecursionError as err:  # pathological nesting the parser could not take
        return [gl000(path, f"cannot parse: too deeply nested ({type(err).__name__})")]
    except Exception as err:  # a bug in a rule or the analysis: report it, keep going
        raise InternalError(path, err) from err
    finally:
        if len(text) >= RELEASE_AFTER_CHARS:
            _release_memory()


# A LibCST tree takes ~400 bytes per character of source: after a file this large, the freed
# tree is handed back to the system, or a pool worker keeps the peak of its largest file for
# the rest of the run (measured on torch: 196 MB -> 45 MB after distributed_test.py).
RELEASE_AFTER_CHARS = 100_000


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, or None where there is none (macOS, Windows, musl)."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim  # the process's own symbols: libc's, if glibc
    except (OSError, AttributeError, ImportError):
        return None


def _release_memory() -> None:
    """Return free heap pages to the system (CPython frees the tree; glibc keeps its pages)."""
    trim = _malloc_trim()
    if trim is not None:
        try:
            trim(0)
        except Exception:  # never let memory housekeeping fail a file
            pass


def finish(findings: List[Finding], text: str, path: str, enabled: set) -> List[Finding]:
    """Keep enabled codes (GL000 only if enabled), apply noqa, sort."""
    from gradlint import suppression

    findings = [f for f in findings if f.code in enabled]
    findings = suppression.apply(findings, text, enabled, path)
    findings = [f for f in findings if f.code in enabled]
    return sorted(findings, key=Finding.sort_key)


def lint_source(text: str, path: str, settings) -> List[Finding]:
    """Findings for one file's text: select/ignore/per-file-ignores and noqa applied; GL000 when it
    does not parse. `path` names the file (for per-file-ignores and imports); findings carry its
    display path. Raises InternalError if the analysis crashes."""
    shown = display_path(path)
    settings = settings.for_path(path) if hasattr(settings, "for_path") else settings
    enabled = settings.enabled_codes(path)
    return finish(analyse_text(text, shown, settings, enabled), text, shown, enabled)


def lint_bytes(data: bytes, path: str, settings, enabled: Optional[set] = None) -> List[Finding]:
    """Like lint_source, from the file's bytes (decoding problems are GL000)."""
    shown = display_path(path)
    if enabled is None:
        settings = settings.for_path(path) if hasattr(settings, "for_path") else settings
        enabled = settings.enabled_codes(path)
    loader = source_loader(path)
    if loader is not None:
        return loader(data, path, shown, settings, enabled)
    try:
        text, _ = decode_source(data)
    except DecodeProblem as problem:
        return finish([gl000(shown, problem.message, problem.line, problem.column)], "", shown, enabled)
    return finish(analyse_text(text, shown, settings, enabled, data), text, shown, enabled)


# Per-suffix source loaders (notebooks): suffix -> "module:function" taking
# (data, path, display_path, settings, enabled) and returning finished findings.
SOURCE_LOADERS: Dict[str, str] = {".ipynb": "gradlint.notebook:lint_notebook"}


def source_loader(path: str) -> Optional[Callable]:
    suffix = os.path.splitext(path)[1].lower()
    spec = SOURCE_LOADERS.get(suffix)
    if spec is None:
        return None
    import importlib

    module, _, func = spec.partition(":")
    return getattr(importlib.import_module(module), func)


# ---------------------------------------------------------------------------------------------
# Many files


@dataclass
class _Outcome:
    path: str
    findings: List[Finding]
    error: Optional[str] = None
    cached: bool = False


class _Caches:
    """One result cache per settings in use (hierarchical configs each keep their own)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.by_settings: dict = {}

    def for_settings(self, settings):
        if not self.enabled:
            return None
        key = (settings.config_path, settings.root, settings.cache_path)
        if key not in self.by_settings:
            from gradlint.cache import Cache

            self.by_settings[key] = Cache(settings)
        return self.by_settings[key]


def _lint_path(path: str, settings, caches: _Caches) -> _Outcome:
    from gradlint.config import ConfigError

    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        return _Outcome(path, [], f"cannot read {display_path(path)}: {err.strerror or err}")
    try:
        settings = settings.for_path(path)
    except ConfigError as err:
        return _Outcome(path, [], str(err))
    enabled = settings.enabled_codes(path)
    cache = caches.for_settings(settings)
    key = None
    if cache is not None:
        key = cache.key(path, data, enabled)
        hit = cache.get(key, display_path(path))
        if hit is not None:
            return _Outcome(path, hit, cached=True)
    try:
        findings = lint_bytes(data, path, settings, enabled)
    except InternalError as err:
        return _Outcome(path, [], str(err))
    except Exception as err:  # never let one file take the run down
        return _Outcome(path, [], str(InternalError(display_path(path), err)))
    if cache is not None and key is not None:
        cache.put(key, findings, helper_modules(_program_bytes(data, path), path, settings))
    return _Outcome(path, findings)


def _program_bytes(data: bytes, path: str) -> bytes:
    """The Python program of a file, as bytes: a notebook's joined code cells, else the file."""
    if not path.lower().endswith(".ipynb"):
        return data
    try:
        from gradlint.notebook import parse_notebook

        return parse_notebook(data.decode("utf-8-sig")).program.encode("utf-8", "surrogatepass")
    except Exception:  # not a readable notebook: it has no helpers to track
        return b""


_WORKER: dict = {}


def _init_worker(settings, use_cache: bool, cwd: str) -> None:
    os.chdir(cwd)
    _WORKER["settings"] = settings
    _WORKER["caches"] = _Caches(use_cache)


def _lint_chunk(paths: Sequence[str]) -> List[_Outcome]:
    return [_lint_path(p, _WORKER["settings"], _WORKER["caches"]) for p in paths]


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _chunks(paths: List[str], jobs: int) -> List[List[str]]:
    size = max(1, min(32, len(paths) // (jobs * 4) or 1))
    return [paths[i:i + size] for i in range(0, len(paths), size)]


def _lint_in_pool(paths: List[str], settings, jobs: int, use_cache: bool,
                  progress: Optional[Callable[[int, int], None]]) -> List[_Outcome]:
    """Chunks of files over a process pool. If the pool breaks (a worker killed, e.g. by the
    out-of-memory killer), the files it did not finish are linted here, serially."""
    from concurrent.futures.process import BrokenProcessPool

    chunks = _chunks(paths, jobs)
    outcomes: List[_Outcome] = []
    finished = set()
    try:
        with ProcessPoolExecutor(max_workers=min(jobs, len(chunks)), initializer=_init_worker,
                                 initargs=(settings, use_cache, os.getcwd())) as pool:
            futures = [pool.submit(_lint_chunk, chunk) for chunk in chunks]
            for future in as_completed(futures):
                part = future.result()
                outcomes.extend(part)
                finished.update(o.path for o in part)
                if progress:
                    progress(len(finished), len(paths))
    except (BrokenProcessPool, OSError):
        caches = _Caches(use_cache)
        for path in paths:
            if path not in finished:
                outcomes.append(_lint_path(path, settings, caches))
                finished.add(path)
                if progress:
                    progress(len(finished), len(paths))
    return outcomes


def lint_files(
    files: List[str],
    settings,
    *,
    jobs: int = 1,
    use_cache: bool = False,
    progress: Optional[Callable[[int, int], None]] = None,
) -> LintResult:
    """Lint `files` (paths as given); findings sorted, internal errors collected per file."""
    unique = sorted(dict.fromkeys(files))
    result = LintResult(files_checked=len(unique))
    _KINDS.clear()  # files may have come and gone since the last run in this process
    _RESOLVED.clear()
    _PROJECT.answers.clear()
    if not unique:
        return result
    jobs = default_jobs() if not jobs or jobs < 1 else jobs
    outcomes: List[_Outcome] = []
    if jobs == 1 or len(unique) < SERIAL_BELOW:
        caches = _Caches(use_cache)
        for done, path in enumerate(unique, 1):
            outcomes.append(_lint_path(path, settings, caches))
            if progress:
                progress(done, len(unique))
    else:
        outcomes = _lint_in_pool(unique, settings, jobs, use_cache, progress)
    for outcome in sorted(outcomes, key=lambda o: o.path):
        result.findings.extend(outcome.findings)
        result.cache_hits += outcome.cached
        result.paths[display_path(outcome.path)] = outcome.path
        if outcome.error:
            result.errors.append(outcome.error)
    result.findings.sort(key=Finding.sort_key)
    return result


# ---------------------------------------------------------------------------------------------
# Fixes


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
    edits = sorted((e for f in chosen for e in f.fix.edits), key=lambda e: (e.start, e.end), reverse=True)
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

    if source_loader(path) is not None:
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
        _libcst_parse(new_text)
    except (libcst.ParserSyntaxError, RecursionError) as err:
        raise ValueError(f"the {what} code would not parse ({' '.join(str(err).split())[:200]})") from None
    if data.startswith(codecs.BOM_UTF8) and encoding != "utf-8-sig":
        encoding = "utf-8-sig"
    write_atomic(target, new_text.encode(encoding), mode=stat_module.S_IMODE(os.stat(target).st_mode))
    return count


def add_noqa(text: str, findings: Iterable[Finding]) -> Tuple[str, int]:
    """`# noqa: CODES` at the end of each line where a finding starts (ruff's --add-noqa):
    merged into an existing `# noqa: ...` on that line, else appended after the code (and after
    any comment). Lines that end inside a string or with a backslash are left alone, and GL000/
    GL100 are never annotated. Returns (new text, number of lines changed)."""
    from gradlint import suppression

    wanted: Dict[int, set] = {}
    for finding in findings:
        if finding.code in ("GL000", "GL100") or finding.cell is not None:
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
            merged = sorted(set(directive.codes) | codes)
            start, end = directive.column - 1, directive.end_column - 1
            body = body[:start] + "# noqa: " + ", ".join(merged) + body[end:]
        else:
            body = body.rstrip() + "  # noqa: " + ", ".join(sorted(codes))
        lines[number - 1] = body + ending
        changed += 1
    return "".join(lines), changed


def _lines_ending_in_strings(text: str) -> set:
    """Line numbers whose end lies inside a (multi-line) string, f-strings included."""
    out = set()
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

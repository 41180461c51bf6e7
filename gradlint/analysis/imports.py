"""The one import resolver: which file of the project a module name imported by a file is.

Used by the analysis (gradlint.analysis.project reads the helpers a loop calls from other modules)
and, before any parse, by the prefilter and the cache (which project modules a file imports, under
which local names; found with regexes over import statements). Both ask `resolve_module`, so they
agree on which file an import means:

- a relative import (`.mod`, `..`) is looked up from the importing file's folder;
- an absolute import as `sys.path` would find it: in the first of the importing folder, its
  parents (up to IMPORT_PARENTS, stopping at the project root), the root and `root/src` that
  holds the top-level package or module;
- with a project root, only files under it count.

The file system is memoised per process; `forget_files()` clears the memo (files come and go
between runs). Imports no LibCST.
"""

from __future__ import annotations

import functools
import os
import re
import stat as stat_module
from typing import Dict, List, Optional, Tuple

# An import statement starts a line or follows a `;` (`import os; from utils import reset`).
_FROM = re.compile(
    rb"(?:^|;)[ \t]*from[ \t]+(?P<module>\.*[\w.]*)[ \t]+import[ \t]+(?:\((?P<paren>[^)]*)\)|(?P<names>[^\n#;]*))",
    re.MULTILINE,
)
_IMPORT = re.compile(rb"(?:^|;)[ \t]*import[ \t]+(?P<modules>[^\n#;]+)", re.MULTILINE)

_CONTINUATION = re.compile(rb"\\(?:\r\n|\r|\n)")

# How far up from a file absolute imports are looked for.
IMPORT_PARENTS = 4
# Re-export hops followed (`from .train import update` in a package __init__).
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
def _search_bases(here: str, root: Optional[str]) -> List[str]:
    bases = []
    current = here
    for _ in range(IMPORT_PARENTS + 1):
        bases.append(current)
        parent = os.path.dirname(current)
        if current == root or parent == current:
            break
        current = parent
    extra = [root, os.path.join(root, "src")] if root else []
    return list(dict.fromkeys(bases + extra))


def resolve_module(spec: str, here: str, root: Optional[str]) -> Optional[str]:
    """The project file of module `spec` (`pkg.mod`, `.mod`, `..`) imported from folder `here`
    (absolute), under project folder `root` (absolute; None: no root, any folder counts)."""
    key = (spec, here, root)
    if key not in _RESOLVED:
        _RESOLVED[key] = _resolve_uncached(spec, here, root)
    return _RESOLVED[key]


def forget_files() -> None:
    """Clear the file-system memo (files may have come and gone since the last run)."""
    _KINDS.clear()
    _RESOLVED.clear()
    _BASES.clear()


def _resolve_uncached(spec: str, here: str, root: Optional[str]) -> Optional[str]:
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
        key = (top, here, root)
        first = _BASES.get(key)  # the same few top-level packages are asked about from each folder
        if first is None:
            first = _BASES[key] = [
                b for b in _search_bases(here, root)
                if _kind(os.path.join(b, top)) == "dir" or _kind(os.path.join(b, top + ".py")) == "file"][:1]
        bases = first
    else:
        return None
    for base in bases:
        for candidate in _module_files(base, dotted):
            # Inside the project, or beside the importing file (`python train.py` puts the
            # script's own folder on sys.path, wherever the project root is).
            if (root is None or _inside(candidate, root) or _inside(candidate, here)) and _kind(candidate) == "file":
                return candidate
    return None


# Memos of the file system, cleared by each lint_files (files may come and go between runs).
_KINDS: Dict[str, Optional[str]] = {}  # path -> "dir" | "file" | None
_RESOLVED: Dict[Tuple[str, str, Optional[str]], Optional[str]] = {}  # (spec, importing folder, root) -> file
_BASES: Dict[Tuple[str, str, Optional[str]], List[str]] = {}  # (top-level name, folder, root) -> [its base]


def _kind(path: str) -> Optional[str]:
    """What is at `path`, memoised: import resolution asks about the same few paths very often."""
    if path not in _KINDS:
        try:
            mode = os.stat(path).st_mode
            _KINDS[path] = "dir" if stat_module.S_ISDIR(mode) else "file" if stat_module.S_ISREG(mode) else None
        except (OSError, ValueError):  # ValueError: a NUL byte in the name
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
        if name != "*" and not all(part.isidentifier() for part in name.split(".")):
            continue  # not a module name (NUL bytes, stray punctuation): nothing to resolve
        out.append((name, local))
    return out


def _import_statements(data: bytes) -> Tuple[List["re.Match[bytes]"], List["re.Match[bytes]"]]:
    """The matches of `_FROM` and of `_IMPORT` in `data`, as their `finditer` gives them, found
    from the lines that hold the word `import` (both need it on the line they start on): the
    patterns can start at any line start or `;`, which makes a scan of every position of the
    file several times slower than `bytes.find`."""
    froms: List["re.Match[bytes]"] = []
    imports: List["re.Match[bytes]"] = []
    resume = 0  # a `from` match may run over lines (`import (a,\n b)`): no match starts inside
    at = data.find(b"import")
    while at >= 0:
        start = data.rfind(b"\n", 0, at) + 1
        end = data.find(b"\n", at)
        end = len(data) if end < 0 else end
        if b";" in data[start:end]:  # several statements on the line: let the patterns scan it
            for match in _FROM.finditer(data, max(start, resume)):
                if match.start() >= end:
                    break
                froms.append(match)
                resume = match.end()
            imports.extend(_IMPORT.finditer(data, start, end))
        else:
            found = _FROM.match(data, start) if start >= resume else None
            if found is not None:
                froms.append(found)
                resume = found.end()
            found = _IMPORT.match(data, start)
            if found is not None:
                imports.append(found)
        at = data.find(b"import", end)
    return froms, imports


def import_bindings(data: bytes, path: str, root: Optional[str]) -> List[Tuple[str, str, str]]:
    """(project file, local name, remote name) for each name a file binds by importing from a
    module of the project under `root`. `remote` is a function (or submodule) name for
    `from m import f as local`, "*" for `from m import *`, and "" for a module bound by
    `import m as local` (its attributes are reached as `local.f`)."""
    if not root or path == "-" or b"import" not in data:
        return []
    root = os.path.abspath(root)
    here = os.path.dirname(os.path.abspath(path))
    if b"\\" in data:  # backslash continuations: `from utils import \\` + newline + `reset`
        data = _CONTINUATION.sub(b" ", data)
    out: List[Tuple[str, str, str]] = []
    froms, imports = _import_statements(data)
    for match in froms:
        try:
            spec = match.group("module").decode("ascii")
        except UnicodeDecodeError:
            continue
        if not all(part.isidentifier() for part in spec.lstrip(".").split(".") if part):
            continue
        target = resolve_module(spec, here, root)
        for name, local in _names(match.group("paren") or match.group("names") or b""):
            sub = resolve_module(f"{spec}.{name}" if spec.strip(".") else f"{spec}{name}", here, root) \
                if name != "*" else None
            if sub is not None:  # `from pkg import module`
                out.append((sub, local, ""))
            elif target is not None:
                out.append((target, local, name))
    for match in imports:
        for name, local in _names(match.group("modules")):
            target = resolve_module(name, here, root)
            if target is not None:
                out.append((target, local, ""))
    me = os.path.abspath(path)
    return [b for b in out if b[0] != me]


def project_imports(data: bytes, path: str, root: Optional[str]) -> List[str]:
    """The project files `path` imports directly."""
    return sorted({target for target, _, _ in import_bindings(data, path, root)})


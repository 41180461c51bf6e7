"""Where the project calls a function or method: the call sites GL002 summarises parameters from.

A function's parameter may carry a graph only if some caller passes one. When every call site in
the project is visible, a parameter every caller fills with loader data is data, and a parameter
holding a loss is a graph the caller created for this call. This module only finds the sites (the
file, the call, the functions and classes around it, which argument fills which parameter); the
retained-graph analysis classifies what each site passes.

Call sites are looked for in the file being linted and, when a project root is known, in the other
Python files under it (read on demand, bounded, remembered by the index that read them). A function
that is referenced other than by a call (passed as a callback, decorated, a framework hook) has
call sites we cannot see: `sites` then answers None.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Iterator, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.filememo import MAX_FILE_BYTES, FileMemo
from gradlint.discovery import MAX_PROJECT_FILES, PROJECT_LISTING, project_python_files
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.tree import children

MAX_SCANNED_FILES = MAX_PROJECT_FILES  # Python files looked at under the project root
MAX_PARSED_FILES = 40  # of those, files that mention the name and are parsed
# Packages whose base classes call their subclasses' methods themselves (training loops, hooks).
FRAMEWORKS = frozenset(
    "lightning pytorch_lightning lightning_fabric transformers accelerate ignite fastai composer deepspeed "
    "catalyst mmengine mmcv detectron2 keras torchtnt".split()
)
# Methods Python or torch call on their own (`model(x)` runs forward).
IMPLICIT_METHODS = frozenset({"forward", "step", "zero_grad", "backward", "closure"})


_IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
MAX_CACHED_WORDS = 6000
MAX_CACHED_FILES = 64
PARSED_SOURCE_BYTES = 300_000  # of source behind the parsed files kept (a tree is ~400 bytes per byte)

# Which files can mention a name, without reading every project file again for each name asked
# about; which functions a file defines; the parsed files (shared by the files linted in one
# process, so a project's modules are parsed once however many files ask, within a memory bound).
_WORDS = FileMemo(MAX_CACHED_WORDS)
_DEF_WORDS = FileMemo(MAX_CACHED_WORDS)
_DEFINED = FileMemo(MAX_CACHED_WORDS)
_FILES = FileMemo(MAX_CACHED_FILES, PARSED_SOURCE_BYTES)


def _word_list(words: List[bytes]) -> bytes:
    """Distinct words, sorted, one per line between newlines: about one byte a character and no
    Python object per word. Sets of strings per file held 93 MB for the 2,285 files of torch's
    sources, in every pool worker, and pinned the memory of the trees parsed while they were read
    (CPython frees small objects by the MiB, so a few survivors keep a freed tree's pages); these
    are 7.6 MB of plain heap. Looked up with `spells` (a substring search, about 2 GB/s)."""
    return b"\n" + b"\n".join(sorted(set(words))) + b"\n"


def spells(words: bytes, name: str) -> bool:
    """Is the identifier `name` among `words` (a `_word_list`)? Only ASCII identifiers are read
    into those lists, so no other name is among them."""
    return bool(name) and name.isascii() and b"\n" + name.encode("ascii") + b"\n" in words


def _identifiers(data: bytes) -> bytes:
    return _word_list(_IDENTIFIER.findall(data))


def mentions(path: str, name: str) -> bool:
    """Does the file's text (code, strings or comments) spell the identifier `name`? False when
    unreadable. The file's identifiers are read once and remembered until it changes."""
    return spells(_WORDS.get(path, _identifiers, b""), name)


_DEF_WORD = re.compile(rb"\bdef(?:\s|\\)+(\w+)")


def _def_words(data: bytes) -> bytes:
    """The identifiers after a `def` anywhere in the text (strings and comments too): every
    function the file defines is among them."""
    return _word_list(_DEF_WORD.findall(data))


def _function_names(data: bytes) -> FrozenSet[str]:
    tree = ast.parse(data)
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _defined_functions(path: str) -> Optional[FrozenSet[str]]:
    """The names of every function the file defines (methods and nested ones too, `async def`
    included), from CPython's parser (a `def` needs no LibCST tree); None when unreadable, too
    large or unparsable."""
    return _DEFINED.get(path, _function_names, None)


@dataclass(frozen=True)
class ParsedFile:
    path: str
    module: cst.Module
    imports: ImportMap


def _parsed(path: str) -> Callable[[bytes], ParsedFile]:
    def parse(data: bytes) -> ParsedFile:
        module = cst.parse_module(data)
        return ParsedFile(path, module, ImportMap.of(module))

    return parse


def load_file(path: str) -> Optional[ParsedFile]:
    """The parsed file at `path`, re-read when it changes; None when unreadable or unparsable."""
    return _FILES.get(path, _parsed(path), None)


Use = Tuple[cst.CSTNode, Tuple[cst.CSTNode, ...], str]  # node, enclosing defs, "call"/"value"
NamedUse = Tuple[cst.CSTNode, Tuple[cst.CSTNode, ...], str, str]  # ... and the name used


@dataclass(frozen=True)
class CallSite:
    """One call of the function: where it is and which expression fills each parameter."""

    file: ParsedFile
    call: cst.Call
    chain: Tuple[cst.CSTNode, ...]  # enclosing functions and classes, outermost first
    arguments: Dict[str, cst.BaseExpression]  # parameter name -> argument expression


class CallSiteIndex:
    """Finds call sites for one linted file; parsed project files are kept for its lifetime."""

    def __init__(self, path: str, module: cst.Module, imports: ImportMap, project_root: Optional[str]) -> None:
        self.here = ParsedFile(path, module, imports)
        self.root = os.path.abspath(project_root) if project_root else None
        self._here_abs = os.path.abspath(path) if path and path != "-" else None
        self._files: Optional[List[str]] = None
        self._parsed: Dict[str, Optional[ParsedFile]] = {}
        self._uses: Dict[Tuple[str, bool], Dict[str, List[Use]]] = {}
        # Project files whose text was searched for callers: the answers depend on them (a cache
        # of this file's findings is stale once one of them changes).
        self.consulted: Set[str] = set()

    # -- files -----------------------------------------------------------------------------
    def _project_files(self) -> List[str]:
        if self._files is None:
            self._files = project_python_files(self.root)[0] if self.root is not None else []
        return self._files

    def _parse(self, path: str) -> Optional[ParsedFile]:
        if path not in self._parsed:
            self._parsed[path] = load_file(path)
        return self._parsed[path]

    def _naming(self, name: str) -> Iterator[str]:
        """The other project files whose text names `name` (each recorded as consulted), in walk
        order; nothing when there is no root or too many files to scan."""
        if self.root is None:
            return
        files = self._project_files()
        if len(files) > MAX_SCANNED_FILES:
            return
        self.consulted.add(PROJECT_LISTING + self.root)  # a new file may name it too
        for path in files:
            if self._here_abs is not None and os.path.abspath(path) == self._here_abs:
                continue
            self.consulted.add(path)
            if mentions(path, name):
                yield path

    def files_mentioning(self, name: str) -> Optional[List[ParsedFile]]:
        """The linted file and every project file whose text names `name`; None when a file that
        names it cannot be read or there are too many to read (cannot tell)."""
        found = [self.here]
        if self.root is not None and len(self._project_files()) > MAX_SCANNED_FILES:
            return None
        for path in self._naming(name):
            if len(self._parsed) >= MAX_PARSED_FILES and path not in self._parsed:
                return None
            parsed = self._parse(path)
            if parsed is None:
                return None
            found.append(parsed)
        return found

    def defined_elsewhere(self, name: str) -> Optional[bool]:
        """Does another project file define a function `name` (a method, a nested function)?
        None when that cannot be told: too many project files, or a file that names `name`
        cannot be read or parsed. Answered from CPython's parser (a LibCST tree is not needed
        to see a `def`), only for files whose text holds `def name` (both read once per file)."""
        if self.root is not None and len(self._project_files()) > MAX_SCANNED_FILES:
            return None
        for path in self._naming(name):
            words = _DEF_WORDS.get(path, _def_words, None)
            if words is None:
                return None
            if not spells(words, name):
                continue
            names = _defined_functions(path)
            if names is None:
                return None
            if name in names:
                return True
        return False

    def _importers(self, name: str) -> Iterator[ParsedFile]:
        """The other project files that name `name` and import the linted module (`from
        tools.train_function import train`, `from .steps import run`, `import engine` next to it,
        or its package when the package's `__init__` names `name`: `from tools import train`),
        parsed; unreadable ones and those over the bound are left out."""
        if self._here_abs is None:
            return
        patterns = self._import_patterns(name)
        here_dir = os.path.dirname(self._here_abs)
        for path in self._naming(name):
            beside = os.path.dirname(os.path.abspath(path)) == here_dir
            if not _imports(path, patterns, beside):
                continue
            if len(self._parsed) >= MAX_PARSED_FILES and path not in self._parsed:
                return
            parsed = self._parse(path)
            if parsed is not None:
                yield parsed

    def _import_patterns(self, name: str) -> List[Tuple["re.Pattern[bytes]", bool]]:
        """Import statements that bring in the linted module (or its package re-exporting
        `name`), each with whether a bare match (no package before it) needs the importing file
        to sit next to the linted one (a script-directory import)."""
        here = self._here_abs or ""
        stem = os.path.splitext(os.path.basename(here))[0]
        folder = os.path.dirname(here)
        at_root = self.root is not None and os.path.abspath(folder) == self.root
        names = [] if stem == "__init__" else [(stem, not at_root)]
        init = os.path.join(folder, "__init__.py")
        if not at_root and (stem == "__init__" or mentions(init, name)):
            names.append((os.path.basename(folder), False))  # the package re-exports it
        out = []
        for module, near in names:
            word = re.escape(module.encode())
            prefix = rb"(?:([\w.]*\.))?"
            out.append((re.compile(rb"\bfrom\s+" + prefix + word + rb"\s+import\b"), near))
            out.append((re.compile(rb"\bimport\s+" + prefix + word + rb"\b"), near))
            if module == stem:  # `from tools import train_function`, `from . import steps`
                out.append((re.compile(rb"\bfrom\s+([\w.]+)\s+import\s+(?:\([^)]*|[^\n]*)\b" + word + rb"\b"), False))
        return out

    # -- sites -----------------------------------------------------------------------------
    def _uses_of(self, parsed: ParsedFile, method: bool) -> Dict[str, List[Use]]:
        """Every use of every name in a file, walked once per file and kind of name."""
        key = (parsed.path, method)
        found = self._uses.get(key)
        if found is None:
            found = {}
            for use in _uses(parsed.module, method, frozenset(parsed.imports.aliases)):
                found.setdefault(use[3], []).append(use[:3])
            self._uses[key] = found
        return found

    def sites(self, fn: cst.FunctionDef, owner: Optional[cst.ClassDef]) -> Optional[List[CallSite]]:
        """Every call of `fn` (a method of `owner`, or a plain function) in the project, or None
        when some use of it is not a call we can read, or when there is none."""
        name = fn.name.value
        if name.startswith("__") or name in IMPLICIT_METHODS or _decorated(fn):
            return None
        if owner is not None and framework_base(owner, self.here.imports):
            return None  # the framework calls it too, with values we cannot see
        files = self.files_mentioning(name)
        if files is None:
            return None
        skip_self = owner is not None and not _static(fn)
        sites: List[CallSite] = []
        for parsed in files:
            for node, chain, role in self._uses_of(parsed, owner is not None).get(name, ()):
                if role != "call" or not isinstance(node, cst.Call):
                    return None  # passed around as a value: called where we cannot see
                if not _same_function(node, parsed, fn, owner, self.here):
                    continue
                arguments = bind_arguments(node, skip_self, fn)
                if arguments is None:
                    return None
                sites.append(CallSite(parsed, node, chain, arguments))
        return sites or None

    def calls_by_name(self, fn: cst.FunctionDef, cls: Optional[cst.ClassDef] = None) -> List[CallSite]:
        """The calls in the project of the function's bare or module-qualified name (of the
        class's name when `cls` is given: `Trainer(model=net, ...)` runs its `__init__` `fn`), each
        with the expression it passes to each parameter. Unlike `sites`, other uses of the name (a
        callback, a base class, `isinstance`, a different binding of the name) leave the answer
        as it is: a caller of it that is not seen, and calls that are not of this definition, are
        for the user of the answer to weigh (resolve each call's name). Calls with `*`/`**`
        arguments are left out."""
        name = (cls or fn).name.value
        sites: List[CallSite] = []
        for parsed in self._importers(name):
            for node, chain, role in self._uses_of(parsed, False).get(name, ()):
                if role != "call" or not isinstance(node, cst.Call):
                    continue
                arguments = bind_arguments(node, cls is not None, fn)
                if arguments is not None:
                    sites.append(CallSite(parsed, node, chain, arguments))
        return sites


def _imports(path: str, patterns, beside: bool) -> bool:
    """Does the file's text hold one of the import statements? A bare one (no package before the
    module's name) counts next to the linted file only, unless it may be imported from anywhere."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_FILE_BYTES)
    except OSError:
        return False
    for pattern, near in patterns:
        for match in pattern.finditer(text):
            if match.group(1) or beside or not near:
                return True
    return False


def framework_base(owner: cst.ClassDef, imports: ImportMap) -> bool:
    """Does the class derive from a class of a training framework (its hooks are called for us)?"""
    for base in owner.bases:
        qualified = imports.resolve(base.value) or dotted(base.value) or ""
        if qualified.split(".")[0] in FRAMEWORKS or qualified.endswith("LightningModule"):
            return True
    return False


def _decorated(fn: cst.FunctionDef) -> bool:
    return any(not _static_decorator(d) for d in fn.decorators)


def _static_decorator(decorator: cst.Decorator) -> bool:
    return dotted(decorator.decorator) == "staticmethod"


def _static(fn: cst.FunctionDef) -> bool:
    return any(_static_decorator(d) for d in fn.decorators)


def _uses(module: cst.Module, method: bool, aliases: FrozenSet[str]) -> Iterator[NamedUse]:
    """Each place a name is used: (the call or the reference, enclosing defs, "call"/"value",
    the name). For methods, uses are attributes `x.name`; for functions, bare names (not their
    definitions, not attributes of something else)."""
    stack: List[Tuple[cst.CSTNode, Tuple[cst.CSTNode, ...]]] = [(module, ())]
    while stack:
        node, chain = stack.pop()
        if isinstance(node, cst.Call):
            func = node.func
            name = _name_of(func, method, aliases)
            if name is not None:
                yield node, chain, "call", name
                stack.extend((child, chain) for child in children(node) if child is not func)
                if isinstance(func, cst.Attribute):
                    stack.append((func.value, chain))
                continue
        else:
            name = _name_of(node, method, aliases)
            if name is not None:
                yield node, chain, "value", name
                if isinstance(node, cst.Attribute):
                    stack.append((node.value, chain))
                continue
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            inner = chain + (node,)
            for child in children(node):
                if child is node.name:
                    continue  # the definition's own name
                stack.append((child, inner))
            continue
        if isinstance(node, cst.ImportFrom) and not method and not isinstance(node.names, cst.ImportStar):
            for alias in node.names:
                if alias.asname is not None and isinstance(alias.name, cst.Name):
                    yield node, chain, "value", alias.name.value  # renamed: called by another name
            continue
        if isinstance(node, (cst.Import, cst.ImportFrom)):
            continue  # `from train import update`: a name, not a use
        if isinstance(node, cst.Attribute) and not method:
            stack.append((node.value, chain))  # `obj.update` is not the function `update`
            continue
        if isinstance(node, cst.Param):
            stack.extend((child, chain) for child in children(node) if child is not node.name)
            continue  # a parameter's name is a binding, not a use (its default is)
        if isinstance(node, cst.Arg):
            stack.append((node.value, chain))  # `f(loss=x)`: the keyword is no use of `loss`
            continue
        stack.extend((child, chain) for child in children(node))


def _name_of(node: cst.CSTNode, method: bool, aliases: FrozenSet[str]) -> Optional[str]:
    """The name a node uses: `x.name` for methods; for functions `name`, or `helpers.name`
    through an imported module."""
    if method:
        return node.attr.value if isinstance(node, cst.Attribute) else None
    if isinstance(node, cst.Attribute):
        text = dotted(node.value)
        return node.attr.value if text is not None and text.split(".")[0] in aliases else None
    return node.value if isinstance(node, cst.Name) else None


def _same_function(call: cst.Call, parsed: ParsedFile, fn: cst.FunctionDef, owner, here: ParsedFile) -> bool:
    """Could this call reach `fn`? Methods: any `x.name(...)` (over-approximated: every class's
    method of that name). Functions: any call of the name (`update(...)` after `from helpers
    import update` or `*`, `helpers.update(...)`), except a bare call in another file that
    defines a function of that name itself."""
    if owner is not None or parsed is here:
        return True
    if isinstance(call.func, cst.Name):
        own = any(isinstance(s, cst.FunctionDef) and s.name.value == fn.name.value for s in parsed.module.body)
        return not own
    return True


def bind_arguments(call: cst.Call, skip_self: bool, fn: cst.FunctionDef) -> Optional[Dict[str, cst.BaseExpression]]:
    """Parameter -> argument for a call without `*`/`**` arguments; None when an argument goes
    where we cannot follow it (`*args`, `**kwargs`, unknown keywords)."""
    params = fn.params
    positional = [p.name.value for p in list(params.posonly_params) + list(params.params)]
    if skip_self:
        positional = positional[1:]
    keywords = set(positional) | {p.name.value for p in params.kwonly_params}
    out: Dict[str, cst.BaseExpression] = {}
    index = 0
    for arg in call.args:
        if arg.star:
            return None
        if arg.keyword is not None:
            if arg.keyword.value not in keywords:
                return None
            out[arg.keyword.value] = arg.value
            continue
        if index >= len(positional):
            return None
        out[positional[index]] = arg.value
        index += 1
    return out

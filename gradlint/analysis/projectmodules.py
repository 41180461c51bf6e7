"""The modules of the project a file's shape analysis reaches: the file itself and the project
modules it imports (package imports, relative imports, and the script-directory imports that
`python train.py` allows). Files are located with `analysis.project.Project.find_module`; each is
parsed once per modification and kept in a small least-recently-used cache shared by every file
linted in the process. Nothing is imported or executed.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

import libcst as cst

from gradlint.analysis.filememo import FileMemo
from gradlint.analysis.bindings import assignment_counts, definitions, statement_counts
from gradlint.analysis.names import ImportMap
from gradlint.analysis.project import Project

MAX_MODULES_PER_FILE = 12  # distinct project modules read while analysing one file
MAX_CACHED = 64
PARSED_SOURCE_BYTES = 300_000  # of source behind the trees kept (a tree is ~400 bytes per byte)


class ModuleInfo:
    """One parsed module and its top-level definitions."""

    def __init__(self, module: cst.Module, path: str, imports: Optional[ImportMap] = None, main: bool = True) -> None:
        self.module = module
        self.path = path
        self.imports = imports or ImportMap.of(module)
        # The analysed file needs exact counts; a module consulted for its definitions, cheap ones.
        self.counts = assignment_counts(module.body) if main else statement_counts(module.body)
        self.functions: Dict[str, cst.FunctionDef] = {}
        self.classes: Dict[str, cst.ClassDef] = {}
        for node in definitions(module.body):
            if isinstance(node, cst.FunctionDef):
                self.functions.setdefault(node.name.value, node)
            else:
                self.classes.setdefault(node.name.value, node)
        self._methods: Dict[int, List[cst.FunctionDef]] = {}

    def methods(self, cls: cst.ClassDef) -> List[cst.FunctionDef]:
        found = self._methods.get(id(cls))
        if found is None:
            found = [n for n in definitions(cls.body.body) if isinstance(n, cst.FunctionDef)]
            self._methods[id(cls)] = found
        return found


# The parsed modules, shared by every file linted in the process (bounded: see analysis.filememo).
_CACHE = FileMemo(MAX_CACHED, PARSED_SOURCE_BYTES)


def _load(path: str) -> Optional[ModuleInfo]:
    return _CACHE.get(path, lambda data: ModuleInfo(cst.parse_module(data), path, main=False), None)


def _consulted(path: str) -> None:
    from gradlint.analysis import CONSULTED

    collector = CONSULTED.get()
    if collector is not None:  # this file's findings now depend on that module too
        collector.add(path)


class ModuleLoader:
    """Finds the project modules one file's analysis needs (bounded per file)."""

    def __init__(self, main: ModuleInfo, root: Optional[str]) -> None:
        self.main = main
        self.project = Project(main.path, root)
        self.by_path: Dict[str, ModuleInfo] = {main.path: main}
        self._found: Dict[Tuple[str, str], Optional[str]] = {}

    def _path(self, info: ModuleInfo, module_name: str) -> Optional[str]:
        """The file of a project module as imported from `info` (None: not a project module)."""
        if not module_name.strip(".") and not module_name.startswith("."):
            return None
        key = (os.path.dirname(info.path), module_name)
        if key not in self._found:
            try:
                self._found[key] = self.project.find_module(module_name, info.path)
            except Exception:  # a name the locator cannot handle: not a project module
                self._found[key] = None
        path = self._found[key]
        return os.path.abspath(path) if path is not None else None

    def mentions(self, info: ModuleInfo, qualified: str, word: str) -> bool:
        """Does the project module an import-resolved name comes from spell `word`? A look at its
        identifiers (cached), without parsing it: whether a helper there is worth summarising."""
        from gradlint.analysis.call_sites import mentions

        path = self._path(info, qualified.rpartition(".")[0])
        return path is not None and mentions(path, word)

    def module_at(self, path: str) -> Optional[ModuleInfo]:
        """The module at `path` (a project file found by other means, e.g. a caller), registered so
        that instances of its classes resolve; None when unreadable or over the per-file bound."""
        path = os.path.abspath(path)
        target = self.by_path.get(path)
        if target is None:
            if len(self.by_path) > MAX_MODULES_PER_FILE:
                return None
            target = _load(path)
            if target is None:
                return None
            self.by_path[path] = target
        _consulted(path)
        return target

    def locate(self, info: ModuleInfo, qualified: str) -> Tuple[Optional[ModuleInfo], str]:
        """(module, attribute) for an import-resolved name such as `model.Siamese`."""
        module_name, _, attr = qualified.rpartition(".")
        path = self._path(info, module_name)
        if path is None:
            return None, attr
        _consulted(path)
        target = self.by_path.get(path)
        if target is None:
            if len(self.by_path) > MAX_MODULES_PER_FILE:
                return None, attr
            target = _load(path)
            if target is None:
                return None, attr
            self.by_path[path] = target
        return target, attr

"""Finding the project's own helpers in other modules: `from utils import reset_grads`.

A training loop often calls a helper imported from a sibling module. To know whether that helper
clears gradients (or steps, or runs a backward) the analysis reads the helper's module: it is located
relative to the importing file (relative imports, and absolute imports of modules next to it or in a
parent folder) and under `AnalysisOptions.project_root` (and its `src/`). Modules are parsed on demand
and memoised by path and modification time; a module that cannot be read or parsed is simply not
resolved (the caller then treats the helper as unknown). Nothing is imported or executed.
"""

from __future__ import annotations

import os
from typing import Optional

import libcst as cst

from gradlint.analysis.filememo import FileMemo
from gradlint.analysis.facts import ModuleFacts, module_facts
from gradlint.analysis.imports import resolve_module

MAX_REEXPORTS = 3  # `from .train import reset` in a package __init__, followed this many times
MAX_MODULES_PER_FILE = 12  # distinct project modules read while analysing one file
MAX_CACHED_MODULES = 32
PARSED_SOURCE_BYTES = 200_000  # of source behind the facts kept (each holds its LibCST tree)

# path -> facts or None; shared by every file linted in this process, least recently used first
# out: parsed trees are large, and a process linting a big repository must not keep them all
_MODULES = FileMemo(MAX_CACHED_MODULES, PARSED_SOURCE_BYTES)


def _load(path: str) -> Optional[ModuleFacts]:
    """Facts of the module at `path`, parsed once per modification; None if unreadable."""
    return _MODULES.get(path, lambda data: module_facts(cst.parse_module(data), path), None)


class Project:
    """Resolves dotted names imported by a file to function definitions in project modules."""

    def __init__(self, file_path: str, root: Optional[str]) -> None:
        self.loaded: set = set()  # project modules this file has read (bounded)
        self.file_dir = os.path.dirname(os.path.abspath(file_path)) if file_path and file_path != "-" else None
        self.root = os.path.abspath(root) if root else None

    def find_module(self, module_name: str, from_path: str) -> Optional[str]:
        """The file of `module_name` (`pkg.mod`, or `..utils` relative to `from_path`), as the
        one import resolver (gradlint.analysis.imports) finds it."""
        from_dir = os.path.dirname(os.path.abspath(from_path)) if from_path and from_path != "-" else self.file_dir
        if from_dir is None:
            if module_name.startswith(".") or self.root is None:
                return None
            from_dir = self.root
        return resolve_module(module_name, from_dir, self.root)

    def resolve_function(self, facts: ModuleFacts, qualname: str, depth: int = 0):
        """(facts of the defining module, FunctionDef) for `qualname` as seen from `facts`'s file,
        or None. `qualname` is the import-resolved name, e.g. `utils.reset` or `.helpers.clear`."""
        if depth > MAX_REEXPORTS or "." not in qualname.lstrip("."):
            return None
        module_name, _, attr = qualname.rpartition(".")
        path = self.find_module(module_name, facts.path)
        if path is None:
            return None
        if path not in self.loaded:
            if len(self.loaded) >= MAX_MODULES_PER_FILE:
                return None
            self.loaded.add(path)
        target = _load(path)
        if target is None:
            return None
        func = target.functions.get(attr)
        if func is not None:
            return target, func
        alias = target.imports.aliases.get(attr)
        if alias is not None:  # re-exported from another module
            return self.resolve_function(target, alias, depth + 1)
        return None

    def resolve_class(self, facts: ModuleFacts, qualname: str, depth: int = 0):
        """(facts of the defining module, class name) for the class `qualname` names as seen from
        `facts`'s file (`trainer.Trainer`), or None: for methods of project classes used in a loop
        (`t = Trainer(...)`; `t.train_step(batch)`) and of project base classes."""
        if depth > MAX_REEXPORTS or "." not in qualname.lstrip("."):
            return None
        module_name, _, attr = qualname.rpartition(".")
        path = self.find_module(module_name, facts.path)
        if path is None:
            return None
        if path not in self.loaded:
            if len(self.loaded) >= MAX_MODULES_PER_FILE:
                return None
            self.loaded.add(path)
        target = _load(path)
        if target is None:
            return None
        if attr in target.classes:
            return target, attr
        alias = target.imports.aliases.get(attr)
        if alias is not None:  # re-exported from another module
            return self.resolve_class(target, alias, depth + 1)
        return None

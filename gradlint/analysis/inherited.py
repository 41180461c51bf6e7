"""Methods a class inherits: may `self.m()` run a backward when `m` is defined in a base class?

An iteration of a trainer class is inlined from the class's own methods (`attribute_flow`). A call of
a method the class does not define (`self.set_requires_grad(...)` from a `BaseModel` in another
module) stays a call; if it ran a backward over the attributes the iteration keeps, a retained graph
would be walked where we do not look. This module follows the bases (in the file, or imported from
project modules) to the method's definition and says whether it, or a method of its class it calls
on `self`, runs a backward. Bases from torch (`nn.Module`: `self.train()`, `self.parameters()`)
run none; a base or method we cannot find may.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.attribute_flow import assigned_attributes, class_methods, self_call_name
from gradlint.analysis.backward import backward_call
from gradlint.analysis.call_sites import ParsedFile, load_file
from gradlint.analysis.names import dotted
from gradlint.analysis.project import Project
from gradlint.analysis.tree import SCOPES, walk

MAX_DEPTH = 4  # bases followed upwards

_Class = Tuple[cst.ClassDef, ParsedFile]


class Inheritance:
    """Resolves base classes for one linted file (project modules parsed on demand)."""

    def __init__(self, here: ParsedFile, project_root: Optional[str]) -> None:
        self.here = here
        self.project = Project(here.path, project_root)
        self._memo: Dict[Tuple[int, str], bool] = {}

    def may_run_backward(self, owner: cst.ClassDef, name: str) -> bool:
        """Could `self.name(...)`, called in `owner` (of the linted file), run a backward?"""
        return self._inherited((owner, self.here), name, 0, set())

    def defines(self, owner: cst.ClassDef, name: str) -> bool:
        """Does the class (of the linted file) or one of its project bases define method `name`,
        or has it a base we cannot read (which may)? torch's bases do not count."""
        return name in class_methods(owner) or self._defined((owner, self.here), name, 0)

    def _defined(self, cls: _Class, name: str, depth: int) -> bool:
        if depth > MAX_DEPTH:
            return True
        for base in cls[0].bases:
            if base.keyword is not None:
                continue
            found = self._resolve(base.value, cls[1])
            if found == "torch":
                continue
            if found is None or name in class_methods(found[0]) or self._defined(found, name, depth + 1):
                return True
        return False

    def derives_from(self, owner: cst.ClassDef, base_name: str) -> bool:
        """Does the class derive from a class named `base_name` (`LightningModule`), directly or
        through bases in this file or in project modules?"""
        return self._derives((owner, self.here), base_name, 0)

    def _derives(self, cls: _Class, base_name: str, depth: int) -> bool:
        if depth > MAX_DEPTH:
            return False
        owner, parsed = cls
        for base in owner.bases:
            if base.keyword is not None:
                continue
            named = parsed.imports.resolve(base.value) or dotted(base.value) or ""
            if named.split(".")[-1] == base_name:
                return True
            found = self._resolve(base.value, parsed)
            if isinstance(found, tuple) and found[0] is not owner and self._derives(found, base_name, depth + 1):
                return True
        return False

    def _inherited(self, cls: _Class, name: str, depth: int, seen: Set[str]) -> bool:
        if depth > MAX_DEPTH:
            return True
        owner, parsed = cls
        for base in owner.bases:
            if base.keyword is not None:
                continue  # metaclass=...
            found = self._resolve(base.value, parsed)
            if found == "torch":
                continue
            if found is None:
                return True  # a base we cannot read may define it
            methods = class_methods(found[0])
            if name in methods:
                return self._runs_backward(found, methods, name, seen)
            if self._inherited(found, name, depth + 1, seen):
                return True
        return False

    def _runs_backward(self, cls: _Class, methods: Dict[str, cst.FunctionDef], name: str, seen: Set[str]) -> bool:
        owner, parsed = cls
        key = f"{parsed.path}:{owner.name.value}.{name}"
        if key in seen:
            return False
        seen.add(key)
        for node in walk(methods[name].body, SCOPES):
            if isinstance(node, cst.Call):
                if backward_call(node, parsed.imports) is not None:
                    return True
                called = self_call_name(node)
                if called is None:
                    continue
                if called in methods:
                    if self._runs_backward(cls, methods, called, seen):
                        return True
                elif self._inherited(cls, called, 1, seen):
                    return True
        return False

    def _resolve(self, expr: cst.BaseExpression, parsed: ParsedFile):
        """The class a base expression names: (ClassDef, file), "torch" for torch's, or None."""
        text = dotted(expr)
        if text is None:
            return None
        if text in ("object",):
            return "torch"
        local = _top_classes(parsed.module).get(text)
        if local is not None:
            return local, parsed
        qualified = parsed.imports.resolve(expr) or ""
        if qualified.split(".")[0] == "torch":
            return "torch"
        if "." not in qualified.lstrip("."):
            return None
        module_name, _, attr = qualified.rpartition(".")
        path = self.project.find_module(module_name, parsed.path)
        if path is None:
            return None
        target = load_file(path)
        if target is None:
            return None
        found = _top_classes(target.module).get(attr)
        return (found, target) if found is not None else None


def _top_classes(module: cst.Module) -> Dict[str, cst.ClassDef]:
    return {s.name.value: s for s in module.body if isinstance(s, cst.ClassDef)}


def inherited_calls(function: cst.FunctionDef, methods: Dict[str, cst.FunctionDef]) -> List[Tuple[cst.Call, str]]:
    """Calls `self.m(...)` in `function` of methods the class does not define itself (attributes
    the class assigns, `self.netG = Generator()`, are modules it calls, not methods)."""
    attributes = {key.split(".")[1] for fn in methods.values() for key in assigned_attributes(fn)}
    out: List[Tuple[cst.Call, str]] = []
    for node in walk(function.body, SCOPES):
        name = self_call_name(node)
        if name is not None and name not in methods and name not in attributes and isinstance(node, cst.Call):
            out.append((node, name))
    return out

"""Parameters the project's callers fill with a DataParallel-wrapped module (for GL003's shapes).

`train.py` wraps the model (`model = nn.DataParallel(model)`, perhaps under a GPU-count test) and
calls `train(model, loader, ...)`, defined in another module, whose `loss = model(x, y)` then holds
one loss per GPU; or it hands the wrapped model to a trainer's constructor (`Trainer(model=model)`)
that keeps it on `self`. The linted file alone cannot tell: the wrap is in its callers.

For a function of the linted file (a plain function, or a class's `__init__`), the calls of it in the
other project modules are found (`analysis.call_sites`), each call's function is walked up to the
call, and the value each argument has there is merged over the calls the way the statement walk
merges the arms of an `if` (`analysis.shapes.merge`): a wrap survives a merge with an unknown value
or a plain module, as a conditional wrap does; any other disagreement leaves nothing. Only a
parameter that comes out DataParallel-wrapped is bound: what the callers pass otherwise is left to
the file itself. A call only counts when its name resolves, through the caller's imports, to this
very definition. Bounded (calls looked at, caller bodies walked) and remembered per definition; the
files read are recorded as consulted (the cached findings depend on them).
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Tuple

import libcst as cst

from gradlint.analysis.bindings import assigned_keys, forget
from gradlint.analysis.call_sites import CallSite, CallSiteIndex
from gradlint.analysis.projectmodules import ModuleInfo
from gradlint.analysis.reads import param_names
from gradlint.analysis.shapeflow import Walker
from gradlint.analysis.shapes import Value, merge
from gradlint.analysis.summaries import ClassRef, Summaries, holds_wrap
from gradlint.analysis.tree import SCOPES, walk

MAX_SITES = 8  # calls of one definition looked at
MAX_CALLER_WALKS = 16  # caller bodies walked while analysing one file


class _Probe:
    """Takes the place of the walker's call-site notes: keeps the values of one call's arguments."""

    def __init__(self, call: cst.Call, arguments: Dict[str, cst.BaseExpression]) -> None:
        self.call = call
        self.arguments = arguments
        self.values: Optional[Dict[str, Value]] = None

    def note(self, call: cst.Call, env, evaluator) -> None:
        if call is self.call:  # the last visit knows most (a loop's body is walked again)
            self.values = {param: evaluator.value(expr, env) for param, expr in self.arguments.items()}


class WrappedParams:
    """Which parameters of the linted file's functions every caller elsewhere fills with a wrap."""

    def __init__(self, info: ModuleInfo, summaries: Summaries, project_root: Optional[str]) -> None:
        self.info = info
        self.summaries = summaries
        self.index: Optional[CallSiteIndex] = None
        if project_root:
            self.index = CallSiteIndex(info.path, info.module, info.imports, project_root)
        self.memo: Dict[int, Dict[str, Value]] = {}
        self.walks = 0

    def of_function(self, fn: cst.FunctionDef) -> Dict[str, Value]:
        """Parameters of a plain function of the linted file that it calls (`model(x)`) and that
        its callers in other modules fill with a DataParallel wrap."""
        index = self.index
        called = _called_names(fn) & set(param_names(fn))
        if index is None or not called:
            return {}
        return self._remember(fn, lambda: index.calls_by_name(fn), called, "function", fn.name.value)

    def of_init(self, cls: cst.ClassDef, init: cst.FunctionDef) -> Dict[str, Value]:
        """Parameters of a class's `__init__` that the calls of the class elsewhere fill with a wrap."""
        index = self.index
        if index is None:
            return {}
        params = set(param_names(init)[1:])
        return self._remember(init, lambda: index.calls_by_name(init, cls), params, "class", cls.name.value)

    def _remember(self, fn: cst.FunctionDef, find: Callable[[], Optional[List[CallSite]]], params, kind: str,
                  name: str) -> Dict[str, Value]:
        key = id(fn)
        if key not in self.memo:
            self.memo[key] = {}  # while computing: a call of itself knows nothing
            self.memo[key] = self._bound(find() or [], params, kind, name)
            self._consulted()
        return self.memo[key]

    def _bound(self, sites: List[CallSite], params, kind: str, name: str) -> Dict[str, Value]:
        here = os.path.abspath(self.info.path)
        elsewhere = [s for s in sites if os.path.abspath(s.file.path) != here]
        if not elsewhere or len(elsewhere) > MAX_SITES:
            return {}
        merged: Dict[str, Optional[Value]] = {}
        for site in elsewhere:
            arguments = {p: e for p, e in site.arguments.items() if p in params}
            if not arguments:
                continue
            values = self._values_at(site, arguments, name, kind)
            if values is None:
                continue  # not a call of this definition, or one we cannot walk to
            for param in params:
                merged[param] = merge(merged[param], values.get(param)) if param in merged else values.get(param)
        return {p: v for p, v in merged.items() if v is not None and holds_wrap(v)}

    def _values_at(self, site: CallSite, arguments, name: str, kind: str) -> Optional[Dict[str, Value]]:
        """The values the call's arguments have where the call is made."""
        if self.walks >= MAX_CALLER_WALKS:
            return None
        info = self._module(site)
        if info is None or not self._reaches(info, site.call, name, kind):
            return None
        scope, cls = _scope(site.chain, info)
        if scope is None and site.chain:
            return None  # a class body: not followed
        self.walks += 1
        probe = _Probe(site.call, arguments)
        walker = Walker(self.summaries.evaluator(info, cls), info.imports, {}, probe)
        if scope is None:
            walker.block(info.module.body, {})
        else:
            env = forget(self.summaries.module_globals(info), param_names(scope) + sorted(assigned_keys(scope.body)))
            if cls is not None:
                env.update(self.summaries.class_env(cls))
            walker.block(scope.body, env)
        return probe.values

    def _module(self, site: CallSite) -> Optional[ModuleInfo]:
        """The caller's module, as the parse the call site was found in (its nodes are the ones walked)."""
        path = os.path.abspath(site.file.path)
        loader = self.summaries.loader
        known = loader.by_path.get(path)
        if known is not None and known.module is site.file.module:
            return known
        info = ModuleInfo(site.file.module, path, site.file.imports, main=False)
        loader.by_path.setdefault(path, info)
        return info

    def _reaches(self, info: ModuleInfo, call: cst.Call, name: str, kind: str) -> bool:
        """Does the call's name resolve, through the caller's imports, to the linted file's
        function (or class) of that name?"""
        found = self.summaries.definition(info, call.func)
        if found is None or found[0] != kind:
            return False
        return os.path.abspath(found[1].path) == os.path.abspath(self.info.path) and found[2].name.value == name

    def _consulted(self) -> None:
        from gradlint.analysis import CONSULTED

        collector = CONSULTED.get()
        if collector is not None and self.index is not None:
            collector.update(p for p in self.index.consulted if os.path.abspath(p) != os.path.abspath(self.info.path))


def _scope(chain: Tuple[cst.CSTNode, ...], info: ModuleInfo) -> Tuple[Optional[cst.FunctionDef], Optional[ClassRef]]:
    """The function a call is made in, and its class when it is a method taking `self`."""
    if not chain or not isinstance(chain[-1], cst.FunctionDef):
        return None, None
    fn = chain[-1]
    owner = chain[-2] if len(chain) > 1 and isinstance(chain[-2], cst.ClassDef) else None
    if owner is not None and param_names(fn)[:1] == ["self"]:
        return fn, (info, owner)
    return fn, None


def _called_names(fn: cst.FunctionDef) -> set:
    """Names called directly in the function's body (`model(x)`), not in nested scopes."""
    return {
        node.func.value
        for node in walk(fn.body, SCOPES)
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Name)
    }

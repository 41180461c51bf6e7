"""Attributes across a class's methods: one training iteration of a trainer class, inlined.

Trainer classes in the pix2pix/CycleGAN style keep an iteration's tensors on `self`: `optimize()`
calls `self.forward()` (a fresh graph in `self.fake`), `self.backward_G()` (a loss in `self.loss_G`
and its backward), `self.backward_D()`, and steps. Whether a `retain_graph=True` in `backward_G` is
needed depends on what the later methods of the same iteration do with those attributes, and on
what survives into the next call of `optimize()`.

`Iteration` builds one synthetic function for such a driver: its body, with every argument-free
`self.m()` statement of a method of the class replaced by that method's body (in call order, nested
calls too), all wrapped in `while True:` since the driver runs once per batch. The retained-graph
proof then runs on it as on any function, `self.x` attributes being its variables. Statements are
the original nodes (only the blocks around them are new), so a verdict names the real call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.backward import backward_call
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.reads import param_names
from gradlint.analysis.tree import SCOPES, block_statements, walk

MAX_INLINED = 24  # methods inlined into one iteration


def class_methods(owner: cst.ClassDef) -> Dict[str, cst.FunctionDef]:
    """Methods defined once, directly in the class body."""
    seen: Dict[str, List[cst.FunctionDef]] = {}
    for stmt in block_statements(owner.body):
        if isinstance(stmt, cst.FunctionDef):
            seen.setdefault(stmt.name.value, []).append(stmt)
    return {name: defs[0] for name, defs in seen.items() if len(defs) == 1}


def method_owners(module: cst.Module) -> Dict[cst.FunctionDef, cst.ClassDef]:
    """Each method and the class it is defined in."""
    owners: Dict[cst.FunctionDef, cst.ClassDef] = {}
    for node in walk(module):
        if isinstance(node, cst.ClassDef):
            for stmt in block_statements(node.body):
                if isinstance(stmt, cst.FunctionDef):
                    owners[stmt] = node
    return owners


def self_call_name(node: cst.CSTNode) -> Optional[str]:
    """`m` for a call `self.m(...)`."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        receiver = node.func.value
        if isinstance(receiver, cst.Name) and receiver.value == "self":
            return node.func.attr.value
    return None


def _own_calls(fn: cst.FunctionDef) -> Set[str]:
    """Methods `fn` calls on `self` (outside functions nested in it)."""
    names: Set[str] = set()
    for node in walk(fn.body, SCOPES):
        name = self_call_name(node)
        if name is not None:
            names.add(name)
    return names


def drivers(owner: cst.ClassDef, target: str) -> List[str]:
    """Methods of the class that lead to `target` through `self.` calls and that no other method
    calls (an iteration starts there); `[target]` when nothing in the class calls it."""
    methods = class_methods(owner)
    calls = {name: _own_calls(fn) & set(methods) for name, fn in methods.items()}
    callers = {name for name, called in calls.items() if target in called}
    if not callers:
        return [target]
    reaching: Set[str] = set()
    todo = [target]
    while todo:
        name = todo.pop()
        for caller, called in calls.items():
            if name in called and caller not in reaching:
                reaching.add(caller)
                todo.append(caller)
    called_by_others = {n for caller, called in calls.items() for n in called if n != caller}
    return sorted(name for name in reaching if name not in called_by_others)


@dataclass
class Iteration:
    """One driver's iteration as a synthetic function, and the methods inlined into it."""

    driver: str
    function: cst.FunctionDef
    inlined: FrozenSet[str]


def iteration(owner: cst.ClassDef, driver: str, backward_methods: FrozenSet[str]) -> Optional[Iteration]:
    """The synthetic `def driver(self, ...): while True: <inlined body>`, or None when a method
    that runs a backward is reached in a way we cannot inline (it would be invisible)."""
    methods = class_methods(owner)
    fn = methods.get(driver)
    if fn is None:
        return None
    used: Set[str] = {driver}
    body = _expand(block_statements(fn.body), methods, backward_methods, (driver,), used)
    if body is None or not body:
        return None
    loop = cst.While(test=cst.Name("True"), body=cst.IndentedBlock(body=body))
    synthetic = fn.with_changes(body=cst.IndentedBlock(body=[loop]), decorators=())
    return Iteration(driver, synthetic, frozenset(used))


def _expand(
    stmts: List[cst.CSTNode],
    methods: Dict[str, cst.FunctionDef],
    backward_methods: FrozenSet[str],
    active: Tuple[str, ...],
    used: Set[str],
) -> Optional[list]:
    out: list = []
    for stmt in _split_lines(stmts):
        name = _bare_self_call(stmt)
        if name is not None and name in methods:
            inner = _inline(name, methods, backward_methods, active, used)
            if inner is None:
                if name in backward_methods:
                    return None
                out.append(stmt)
            else:
                out.extend(inner)
            continue
        rebuilt = _expand_compound(stmt, methods, backward_methods, active, used)
        if rebuilt is None:
            return None
        out.append(rebuilt)
    return out


def _inline(
    name: str,
    methods: Dict[str, cst.FunctionDef],
    backward_methods: FrozenSet[str],
    active: Tuple[str, ...],
    used: Set[str],
) -> Optional[list]:
    fn = methods[name]
    if name in active or name in used or len(used) >= MAX_INLINED:
        return None
    if len(param_names(fn)) != 1 or fn.decorators or fn.asynchronous is not None:
        return None
    body = list(block_statements(fn.body))
    if body and _is_return(body[-1]):
        body = body[:-1]  # the value of a call statement is dropped
    if any(isinstance(n, (cst.Return, cst.Yield)) for stmt in body for n in walk(stmt, SCOPES)):
        return None  # returns mid-way: the statements after it may not run
    used.add(name)
    return _expand(body, methods, backward_methods, active + (name,), used)


def _expand_compound(
    stmt: cst.CSTNode,
    methods: Dict[str, cst.FunctionDef],
    backward_methods: FrozenSet[str],
    active: Tuple[str, ...],
    used: Set[str],
) -> Optional[cst.CSTNode]:
    """The statement with inlined calls in its blocks (If/For/While/With); None when it holds a
    call of a backward-running method we keep as a call with nothing to inline it by."""
    if isinstance(stmt, (cst.If, cst.For, cst.While, cst.With)):
        body = _expand(block_statements(stmt.body), methods, backward_methods, active, used)
        if body is None:
            return None
        changes: dict = {}
        if body != list(block_statements(stmt.body)):
            changes["body"] = cst.IndentedBlock(body=body)
        orelse = getattr(stmt, "orelse", None)
        if isinstance(orelse, cst.If):
            new_orelse = _expand_compound(orelse, methods, backward_methods, active, used)
            if new_orelse is None:
                return None
            if new_orelse is not orelse:
                changes["orelse"] = new_orelse
        elif isinstance(orelse, cst.Else):
            other = _expand(block_statements(orelse.body), methods, backward_methods, active, used)
            if other is None:
                return None
            if other != list(block_statements(orelse.body)):
                changes["orelse"] = cst.Else(body=cst.IndentedBlock(body=other))
        if isinstance(stmt, cst.For):
            headers: List[cst.CSTNode] = [stmt.iter]
        elif isinstance(stmt, cst.With):
            headers = [item.item for item in stmt.items]
        else:
            headers = [stmt.test]
        if any(_calls_backward_method(h, backward_methods) for h in headers):
            return None
        return stmt.with_changes(**changes) if changes else stmt
    if _calls_backward_method(stmt, backward_methods):
        return None
    return stmt


def _calls_backward_method(node: cst.CSTNode, backward_methods: FrozenSet[str]) -> bool:
    """Does `node` call `self.m(...)` for a method `m` that runs a backward, where the call cannot
    be inlined? Calls with arguments are kept (the analysis reads their arguments and the
    attributes the method mentions); argument-free calls inside expressions are not followed."""
    for inner in walk(node, SCOPES):
        name = self_call_name(inner)
        if name is not None and name in backward_methods and isinstance(inner, cst.Call) and not inner.args:
            return True
    return False


def _split_lines(stmts: List[cst.CSTNode]) -> List[cst.CSTNode]:
    """`self.forward(); self.backward_G()` on one line: one statement line per call (the small
    statements themselves stay the original nodes)."""
    out: List[cst.CSTNode] = []
    for stmt in stmts:
        if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) > 1:
            out.extend(cst.SimpleStatementLine(body=[small]) for small in stmt.body)
        else:
            out.append(stmt)
    return out


def _bare_self_call(stmt: cst.CSTNode) -> Optional[str]:
    """`m` for a statement line that is exactly `self.m()`."""
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return None
    small = stmt.body[0]
    if not isinstance(small, cst.Expr) or not isinstance(small.value, cst.Call) or small.value.args:
        return None
    return self_call_name(small.value)


def _is_return(stmt: cst.CSTNode) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Return)
    )


def mentioned_attributes(fn: cst.FunctionDef, methods: Dict[str, cst.FunctionDef]) -> Set[str]:
    """`self.x` keys a method reads, with those of the methods it calls on `self`."""
    keys: Set[str] = set()
    seen: Set[str] = set()
    todo = [fn]
    while todo:
        current = todo.pop()
        for node in walk(current.body, SCOPES):
            if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) and node.value.value == "self":
                keys.add(f"self.{node.attr.value}")
            name = self_call_name(node)
            if name is not None and name in methods and name not in seen:
                seen.add(name)
                todo.append(methods[name])
    return keys


def attributes_walked_elsewhere(
    module: cst.Module, imports: ImportMap, inside: Set[cst.FunctionDef], helpers: FrozenSet[str]
) -> Set[str]:
    """Attribute names mentioned by code outside `inside` that runs a backward (a function, or a
    module-level statement, with a backward call or a call of a backward helper): a graph kept in
    such an attribute may be walked there."""
    names: Set[str] = set()
    units: List[cst.CSTNode] = [n for n in walk(module) if isinstance(n, cst.FunctionDef) and n not in inside]
    units += [s for s in module.body if not isinstance(s, (cst.FunctionDef, cst.ClassDef))]
    for unit in units:
        nodes = list(walk(unit.body if isinstance(unit, cst.FunctionDef) else unit, SCOPES))
        runs = False
        for node in nodes:
            if isinstance(node, cst.Call):
                text = dotted(node.func)
                if backward_call(node, imports) is not None or (
                    text is not None and text.split(".")[-1] in helpers
                ):
                    runs = True
                    break
        if runs:
            names |= {n.attr.value for n in nodes if isinstance(n, cst.Attribute)}
    return names


def assigned_attributes(fn: cst.FunctionDef) -> Set[str]:
    """`self.x` keys (and `self.x.y` chains) a method assigns."""
    keys: Set[str] = set()
    for node in walk(fn.body, SCOPES):
        targets: List[cst.BaseExpression] = []
        if isinstance(node, cst.Assign):
            targets = [t.target for t in node.targets]
        elif isinstance(node, (cst.AugAssign, cst.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for element in _flatten(target):
                text = dotted(element)
                if text is not None and text.startswith("self."):
                    keys.add(text)
    return keys


def _flatten(target: cst.BaseExpression) -> List[cst.BaseExpression]:
    if isinstance(target, (cst.Tuple, cst.List)):
        out: List[cst.BaseExpression] = []
        for element in target.elements:
            out += _flatten(element.value)
        return out
    if isinstance(target, cst.StarredElement):
        return _flatten(target.value)
    if isinstance(target, cst.Subscript):
        return _flatten(target.value)
    return [target]

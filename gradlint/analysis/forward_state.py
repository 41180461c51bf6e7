"""Attributes a module's forward sets afresh on every call: `self.aux_loss` read after `model(x)`.

Models keep side outputs of their forward on `self` (an auxiliary loss, a load-balancing term):
`self.aux_loss = torch.zeros(1)` in `__init__`, `self.add_auxiliary_loss(aux, alpha)` in a subclass's
`forward`, and a training loop in the base class adds `self.aux_loss` to the loss after
`y = model(x)`. Read after this iteration's forward, the attribute holds this iteration's graph (or
the constructor's constant), not one carried over from the last iteration.

`refreshed_attributes` proves that for attribute names, across every project file that names
them. Every assignment of the attribute must be on `self` and be either
- in `__init__`, with a value without history (a constant, a tensor factory), or
- a plain assignment that every call of a `forward` makes: a top-level statement of that `forward`
  (no `return` before it), or of a method whose every use in the project is a top-level call
  statement `self.m(...)` of a `forward`; the class of that `forward` has no subclass in the project
  (an override could call it conditionally), and the value does not read the attribute itself.
Any other assignment (on another object, in another method, under a condition, `+=`, `setattr`)
leaves the attribute possibly carried. `forward_calls` finds the calls that run `self`'s forward
(`self(x)`, `self.forward(x)`, `model(x)` after `model = self.train()`).
"""

from __future__ import annotations

from typing import Callable, Dict, FrozenSet, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.call_sites import ParsedFile
from gradlint.analysis.names import dotted
from gradlint.analysis.reads import INERT, ReadCollector, param_names
from gradlint.analysis.tree import SCOPES, block_statements, children, walk

# nn.Module methods that return the module itself.
_RETURNS_SELF = frozenset({
    "train", "eval", "to", "cuda", "cpu", "float", "double", "half", "bfloat16", "requires_grad_", "type",
})

Files = Callable[[str], Optional[List[ParsedFile]]]


def forward_calls(fn: cst.FunctionDef, overridden: Callable[[str], bool]) -> List[cst.Call]:
    """Calls in method `fn` (outside nested functions) that run the forward of `self`: `self(x)`,
    `self.forward(x)`, and calls of names bound only to `self` or `self.train()` (nn.Module methods
    that return the module, unless `overridden(name)`: the class defines its own, which may return
    something else, or nothing)."""
    used = {
        node.func.attr.value
        for node in walk(fn.body, SCOPES)
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in _RETURNS_SELF
    }
    returning_self = frozenset(name for name in used if not overridden(name))
    aliases = _self_aliases(fn, returning_self)
    out: List[cst.Call] = []
    for node in walk(fn.body, SCOPES):
        if not isinstance(node, cst.Call):
            continue
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value == "forward":
            func = func.value
        if isinstance(func, cst.Name) and (func.value == "self" or func.value in aliases):
            out.append(node)
    return out


def _self_aliases(fn: cst.FunctionDef, returning_self: FrozenSet[str]) -> Set[str]:
    """Names every binding of which in `fn` is `self` or `self.train()` (and the like)."""
    bound: Dict[str, bool] = {}
    params = set(param_names(fn))
    for node in walk(fn.body, SCOPES):
        targets: List[cst.BaseExpression] = []
        value: Optional[cst.BaseExpression] = None
        if isinstance(node, cst.Assign):
            targets, value = [t.target for t in node.targets], node.value
        elif isinstance(node, (cst.AnnAssign, cst.AugAssign, cst.NamedExpr)):
            targets, value = [node.target], node.value if not isinstance(node, cst.AugAssign) else None
        elif isinstance(node, (cst.For, cst.CompFor)):
            targets = [node.target]
        elif isinstance(node, cst.AsName):
            targets = [node.name]
        for target in targets:
            for name in walk(target):
                if isinstance(name, cst.Name):
                    single = isinstance(target, cst.Name)
                    bound[name.value] = bound.get(name.value, True) and single and _is_self(value, returning_self)
    return {name for name, ok in bound.items() if ok and name not in params and name != "self"}


def _is_self(value: Optional[cst.BaseExpression], returning_self: FrozenSet[str]) -> bool:
    if isinstance(value, cst.Name):
        return value.value == "self"
    if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute):
        return value.func.attr.value in returning_self and _is_self(value.func.value, returning_self)
    return False


def refreshed_attributes(names: Set[str], here: ParsedFile, files: Files) -> FrozenSet[str]:
    """The attribute names (without `self.`) that every forward call sets afresh, as above; the
    linted file (`here`) is read first, so that an attribute it already rules out (`self.device =
    device`, set in `compile()`) costs no search of the project."""

    def only_here(_: str) -> Optional[List[ParsedFile]]:
        return [here]

    return frozenset(
        name for name in sorted(names) if _refreshed(name, only_here, partial=True) and _refreshed(name, files)
    )


def _refreshed(name: str, files: Files, partial: bool = False) -> bool:
    """`partial`: `files` gives only some of the files naming it; say False only for what they
    rule out (not for an assignment found nowhere)."""
    found = files(name)
    if not found:
        return False
    setters: Set[Tuple[str, str]] = set()  # (method, class) setting it outside __init__
    assigned = False
    for parsed in found:
        facts = _facts(parsed.module)
        if facts.computed_setattr or name in facts.unfollowed:
            return False
        reads = ReadCollector(parsed.imports)
        for assign, value, method, owner in facts.assignments.get(name, ()):
            if method is None or owner is None:
                return False  # on another object, or outside a method we can place
            assigned = True
            if method.name.value == "__init__":
                found_reads = reads.reads(value) if value is not None else None
                if found_reads is None or found_reads.kind != INERT or found_reads.ctors:
                    return False
                continue
            if not isinstance(assign, cst.Assign) or _mentions_self_attribute(value, name):
                return False
            if not _unconditional(method, assign):
                return False
            if method.name.value == "forward":
                setters.add(("forward", owner.name.value))
            else:
                setters.add((method.name.value, owner.name.value))
    if not assigned and not partial:
        return False  # a method, or an attribute set where we do not see it
    for method_name, owner_name in setters:
        if method_name == "forward":
            if _subclassed(owner_name, files):
                return False
        elif not _called_only_from_forwards(method_name, name, files):
            return False
    return True


_Assignment = Tuple[cst.CSTNode, Optional[cst.BaseExpression], Optional[cst.FunctionDef], Optional[cst.ClassDef]]


class _Facts:
    """What one module does to attributes, gathered in one walk."""

    def __init__(self, module: cst.Module) -> None:
        self.assignments = _assignments(module)
        self.unfollowed: Set[str] = set()  # set by `setattr(x, "name", v)` or removed by `del x.name`
        self.computed_setattr = False  # `setattr(x, name, v)` with a name we cannot read
        self.base_words: Set[str] = set()  # names and strings in the bases of every class
        for node in walk(module):
            if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == "setattr":
                named = node.args[1].value if len(node.args) > 1 else None
                if isinstance(named, cst.SimpleString) and isinstance(named.evaluated_value, str):
                    self.unfollowed.add(named.evaluated_value)
                else:
                    self.computed_setattr = True
            elif isinstance(node, cst.Del):
                self.unfollowed |= {n.attr.value for n in walk(node) if isinstance(n, cst.Attribute)}
            elif isinstance(node, cst.ClassDef):
                for base in node.bases:
                    for n in walk(base.value):
                        if isinstance(n, cst.Name):
                            self.base_words.add(n.value)
                        elif isinstance(n, cst.SimpleString):
                            self.base_words.add(n.value)


_FACTS: Dict[int, Tuple[cst.Module, _Facts]] = {}
MAX_REMEMBERED = 64


def _facts(module: cst.Module) -> _Facts:
    known = _FACTS.get(id(module))
    if known is not None and known[0] is module:
        return known[1]
    if len(_FACTS) >= MAX_REMEMBERED:
        _FACTS.clear()
    found = _Facts(module)
    _FACTS[id(module)] = (module, found)
    return found


def _assignments(module: cst.Module) -> Dict[str, List[_Assignment]]:
    """(assignment, value, method, class) for every assignment of `<x>.name`, by name: method and
    class are None unless it is `self.name` in a method of a class (not nested deeper)."""
    out: Dict[str, List[_Assignment]] = {}
    stack: List[Tuple[cst.CSTNode, Optional[cst.FunctionDef], Optional[cst.ClassDef]]] = [(module, None, None)]
    while stack:
        node, method, owner = stack.pop()
        if isinstance(node, cst.ClassDef):
            for child in block_statements(node.body):
                if isinstance(child, cst.FunctionDef):
                    stack.append((child, child, node))
                else:
                    stack.append((child, None, None))
            continue
        if isinstance(node, (cst.FunctionDef, cst.Lambda)) and node is not method:
            method, owner = None, None  # a function nested in a method (or a plain function)
        if isinstance(node, (cst.Assign, cst.AugAssign, cst.AnnAssign)):
            targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
            for target in targets:
                for element in walk(target):
                    if isinstance(element, cst.Attribute):
                        on_self = isinstance(element.value, cst.Name) and element.value.value == "self"
                        where = (method, owner) if on_self else (None, None)
                        out.setdefault(element.attr.value, []).append((node, node.value, where[0], where[1]))
        stack.extend((child, method, owner) for child in children(node))
    return out


def _mentions_self_attribute(value: Optional[cst.BaseExpression], name: str) -> bool:
    if value is None:
        return True
    return any(dotted(n) == f"self.{name}" for n in walk(value) if isinstance(n, cst.Attribute))


def _unconditional(method: cst.FunctionDef, node: cst.CSTNode) -> bool:
    """Is `node` in a top-level statement line of `method`, with no `return` or `yield` before it?"""
    for stmt in block_statements(method.body):
        if isinstance(stmt, cst.SimpleStatementLine) and any(small is node for small in stmt.body):
            return True
        if any(isinstance(n, (cst.Return, cst.Yield)) for n in walk(stmt, SCOPES)):
            return False
    return False


def _subclassed(class_name: str, files: Files) -> bool:
    """Does any project class derive from a class of this name (or can we not tell)?"""
    found = files(class_name)
    if found is None:
        return True
    for parsed in found:
        words = _facts(parsed.module).base_words
        if class_name in words or any(class_name in w for w in words if w[:1] in "\"'"):
            return True  # `DIEN`, `models.DIEN`, `mixin(DIEN)`, `"DIEN"`
    return False


def _called_only_from_forwards(method_name: str, attribute: str, files: Files) -> bool:
    """Is every use of `method_name` in the project a top-level call statement `self.m(...)` of a
    `forward` whose class has no subclass, with arguments that do not read the attribute?"""
    found = files(method_name)
    if not found:
        return False
    owners: Set[str] = set()
    for parsed in found:
        uses = _uses(parsed.module, method_name)
        if uses is None:
            return False
        for call, method, owner in uses:
            if method is None or owner is None or method.name.value != "forward":
                return False
            if any(_mentions_self_attribute(arg.value, attribute) for arg in call.args):
                return False
            owners.add(owner.name.value)
    return all(not _subclassed(owner, files) for owner in owners)


def _uses(
    module: cst.Module, name: str
) -> Optional[List[Tuple[cst.Call, Optional[cst.FunctionDef], Optional[cst.ClassDef]]]]:
    """Calls `self.name(...)` that are whole top-level statements of a method (with that method and
    its class), or None when `name` is used in any other way (definitions apart)."""
    definitions = {id(n.name) for n in walk(module) if isinstance(n, cst.FunctionDef) and n.name.value == name}
    placed: Dict[int, Tuple[cst.Call, cst.FunctionDef, cst.ClassDef]] = {}
    for owner in walk(module):
        if not isinstance(owner, cst.ClassDef):
            continue
        for method in block_statements(owner.body):
            if not isinstance(method, cst.FunctionDef):
                continue
            for stmt in block_statements(method.body):
                if any(isinstance(n, (cst.Return, cst.Yield)) for n in walk(stmt, SCOPES)):
                    break
                if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
                    small = stmt.body[0]
                    if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
                        func = small.value.func
                        if dotted(func) == f"self.{name}":
                            assert isinstance(func, cst.Attribute)
                            placed[id(func.attr)] = (small.value, method, owner)
    out: List[Tuple[cst.Call, Optional[cst.FunctionDef], Optional[cst.ClassDef]]] = []
    for node in walk(module):
        if isinstance(node, cst.Name) and node.value == name and id(node) not in definitions:
            if id(node) not in placed:
                return None
            out.append(placed[id(node)])
    return out

"""How long a training loop's graphs live: the facts GL006 and GL008 read.

Both questions are about a *training loop* (a `for`/`while` whose body runs a backward) and a value
that lives on from one iteration into the next:

- `kept_histories`: a statement that stores a tensor with history that the loop's backward also
  walks (the loss, a scaled copy, an output) into something that outlives the iteration:
  `running_loss += loss`, `total = total + loss`, `losses.append(loss)`, `history[k] = loss`. Each
  stored tensor holds its whole graph, so every iteration's graph stays alive (GL006).
- `carried_states`: a backward whose root reads a value that the previous iteration's forward
  produced from its own previous value (`output, hidden = model(x, hidden)`) and that nothing in
  the loop detaches (`.detach()`, `detach_()`, a `repackage_hidden`-style helper, `.data`) or
  re-creates after the backward. The second backward walks into the first one's freed graph and
  raises, or, with `retain_graph=True`, the graph grows without bound (GL008).

Everything is read off the def-use scopes GL002 builds (`graphs.GraphAnalysis`/`Scope`: the class of
each name, closures of what flows into a backward root, what a loop body carries). Where those
facts leave a doubt the analysis stays silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, Iterator, List, Optional, Set, Tuple, Union

import libcst as cst

from gradlint.analysis.backward import BackwardCall, backward_call
from gradlint.analysis.graph_scope import Scope
from gradlint.analysis.retained import GraphAnalysis
from gradlint.analysis.helpers import backward_helpers
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.reads import GRAPH, INERT, LEAF, LOGGING_METHODS, is_false, is_true, key_of
from gradlint.analysis.tree import COMPREHENSIONS, SCOPES, block_statements, children, walk

Loop = Union[cst.For, cst.While]

# Methods that put a value into a list-like container that outlives the statement.
LIST_STORES = frozenset({"append", "extend", "insert", "appendleft"})
# Calls that build a plain Python container (not a tensor buffer).
_CONTAINER_FACTORIES = frozenset({"list", "dict", "defaultdict", "OrderedDict", "deque", "Counter"})
# Calls whose arguments are only shown to a person (their value is not kept as a tensor).
_SHOWING = frozenset({"print", "str", "repr", "format", "round", "float", "int", "len"}) | LOGGING_METHODS
# Methods that make a tensor a number or a detached copy.
_TO_NUMBER = frozenset({"item", "tolist", "detach", "cpu", "numpy", "__format__"})
# Words in a `forward` that cut the graph of a state it is handed.
_DETACH_WORDS = ("detach", "repackage", ".data")


@dataclass(frozen=True)
class KeptHistory:
    """A store that keeps a graph alive past its iteration."""

    statement: cst.CSTNode  # the small statement: AugAssign, Assign or the Expr of `x.append(v)`
    holder: str  # what outlives the iteration: `running_loss`, `losses`, `self.history`
    value: cst.BaseExpression  # the stored expression
    form: str  # "accumulate" | "append" | "store"
    scalar: bool  # `value` is the (scalar) root of a backward: `.item()` gives its number
    item_fix: bool  # `.item()` on `value` is a safe fix (a scalar root, the holder only shown)


@dataclass(frozen=True)
class CarriedState:
    """A backward whose root reads a state carried over from the previous iteration's graph."""

    backward: BackwardCall
    state: str  # the carried name
    producer: cst.CSTNode  # the statement of the loop that produces it from its previous value
    retained: bool  # the backward passes retain_graph=True


# --------------------------------------------------------------------------------------------
# Building the scopes


def training_holders(module: cst.Module, imports: ImportMap, backward_functions: Tuple[str, ...]) -> Optional[Set[cst.CSTNode]]:
    """Functions and classes around a backward-like call (None when the module has none): only
    their scopes can hold a training loop."""
    helpers = backward_helpers(module, imports)
    configured = {f.split(".")[-1] for f in backward_functions}
    holders: Set[cst.CSTNode] = set()
    found = False
    stack: List[Tuple[cst.CSTNode, Tuple[cst.CSTNode, ...]]] = [(module, ())]
    while stack:
        node, around = stack.pop()
        kind = type(node)
        if kind is cst.Call:
            name = dotted(node.func)  # type: ignore[attr-defined]
            last = name.split(".")[-1] if name else ""
            if backward_call(node, imports) is not None or last in helpers or last in configured:  # type: ignore[arg-type]
                found = True
                holders.update(around)
        elif kind is cst.FunctionDef or kind is cst.ClassDef:
            around = around + (node,)
        stack.extend((child, around) for child in children(node))
    return holders if found else None


def build_analysis(module: cst.Module, imports: ImportMap, backward_functions: Tuple[str, ...]) -> Optional[GraphAnalysis]:
    """GL002's scopes for the functions that run a backward, or None when none does."""
    holders = training_holders(module, imports, backward_functions)
    if holders is None:
        return None
    try:
        return GraphAnalysis(module, imports, backward_functions, holders)
    finally:
        _forget_bindings()


def _forget_bindings() -> None:
    # `pure_functions` memoises assignment targets per tree; keep no tree alive after the file.
    from gradlint.analysis import scalars

    cache = getattr(scalars, "_ASSIGNED", None)
    if cache is not None:
        cache.clear()


# --------------------------------------------------------------------------------------------
# Shared questions about one scope


def loops_of(scope: Scope) -> List[Loop]:
    return [stmt for stmt in scope.places if isinstance(stmt, (cst.For, cst.While))]


def smalls_of(scope: Scope, stmt: cst.CSTNode) -> List[cst.CSTNode]:
    if isinstance(stmt, cst.SimpleStatementLine):
        return list(stmt.body)
    if isinstance(stmt, cst.BaseSmallStatement):
        return [stmt]
    return []


def defined_in(scope: Scope, loop: Loop) -> Dict[str, List]:
    """Definitions made by the statements of a loop's body (nested ones included)."""
    out: Dict[str, List] = {}
    for stmt in scope.statements_within(block_statements(loop.body)):
        for node in [stmt] + smalls_of(scope, stmt):
            for definition in scope.defs_at.get(node, ()):
                out.setdefault(definition.key, []).append(definition)
    return out


def root_deps(analysis: GraphAnalysis, scope: Scope, later) -> Set[str]:
    """Names whose values may flow into what a backward-like call walks."""
    if later.tensor is not None:
        keys = set(analysis.reads.reads(later.tensor).keys)
        keys |= {k for k in _names(later.tensor)}
    elif later.roots is not None:
        keys = set(later.roots)
    else:
        return set()
    return scope.closure(keys) | keys


def _names(expr: cst.CSTNode) -> Iterator[str]:
    """Variables an expression mentions (`self.x` chains and `a.b` texts too; never the `b` of `a.b`)."""
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, (cst.Name, cst.Attribute)):
            key = key_of(node)
            if key is not None:
                yield key
                text = dotted(node)
                if text is not None and text != key:
                    yield text
                continue
            if isinstance(node, cst.Attribute):
                stack.append(node.value)
                continue
        if isinstance(node, SCOPES):
            continue
        stack.extend(children(node))


def under_no_grad(scope: Scope, stmt: cst.CSTNode) -> bool:
    """Is the statement inside `with torch.no_grad()` / `inference_mode()` / `set_grad_enabled(False)`?"""
    for node, place in scope.enclosing(stmt):
        parent = place.parent
        if isinstance(parent, cst.With):
            for item in parent.items:
                target = item.item.func if isinstance(item.item, cst.Call) else item.item
                qualified = scope.analysis.imports.resolve(target)
                if qualified in ("torch.no_grad", "torch.inference_mode"):
                    return True
                if qualified == "torch.set_grad_enabled" and isinstance(item.item, cst.Call):
                    args = item.item.args
                    if args and isinstance(args[0].value, cst.Name) and args[0].value.value == "False":
                        return True
    return False


def assigns_before(scope: Scope, stmt: cst.CSTNode, loop: Loop, key: str) -> bool:
    """Is `key` bound afresh (not from itself) by a statement that runs before `stmt` in the same
    iteration of `loop` (any earlier statement of the enclosing blocks, conditional or not)?"""
    for node, place in scope.enclosing(stmt):
        for earlier in place.block[: place.index]:
            if _binds_afresh(scope, earlier, key):
                return True
        if place.parent is loop:
            return False
        if isinstance(place.parent, cst.For) and key in _target_names(place.parent.target):
            return True
    return False


def _binds_afresh(scope: Scope, stmt: cst.CSTNode, key: str) -> bool:
    for inner in scope.statements_within([stmt]):
        if isinstance(inner, cst.For) and key in _target_names(inner.target):
            return True
        if isinstance(inner, cst.With):
            for item in inner.items:
                if item.asname is not None and key in _target_names(item.asname.name):
                    return True
        for small in smalls_of(scope, inner):
            if isinstance(small, (cst.Assign, cst.AnnAssign)) and small.value is not None:
                targets = [t.target for t in small.targets] if isinstance(small, cst.Assign) else [small.target]
                if any(key in _target_names(t) for t in targets) and key not in set(_names(small.value)):
                    return True
    return False


def _target_names(target: cst.BaseExpression) -> Set[str]:
    if isinstance(target, (cst.Name, cst.Attribute)):
        text = dotted(target)
        return {text} if text else set()
    if isinstance(target, (cst.Tuple, cst.List)):
        out: Set[str] = set()
        for element in target.elements:
            out |= _target_names(element.value)
        return out
    if isinstance(target, cst.StarredElement):
        return _target_names(target.value)
    return set()


# --------------------------------------------------------------------------------------------
# GL006: history kept past the iteration


def kept_histories(analysis: GraphAnalysis) -> List[KeptHistory]:
    found: List[KeptHistory] = []
    for scope in analysis.scopes:
        found.extend(_kept_in_scope(analysis, scope))
    return found


def _kept_in_scope(analysis: GraphAnalysis, scope: Scope) -> Iterator[KeptHistory]:
    loops = loops_of(scope)
    training: Dict[cst.CSTNode, list] = {}
    for loop in loops:
        # Real backward calls only: a helper that runs one (`train_step(...)`) usually hands back
        # numbers, and what it keeps is its own business.
        calls = [later for later in scope.calls_within(block_statements(loop.body)) if later.backward is not None]
        if calls:
            training[loop] = calls
    if not training:
        return
    every_call = [later for calls in scope.later_calls.values() for later in calls]
    backpropagated: Set[str] = set()
    for later in every_call:
        if later.tensor is None and later.roots is None:
            return  # a backward whose root we cannot read may walk any accumulator
        backpropagated |= root_deps(analysis, scope, later)
    order = {node: index for index, node in enumerate(walk(scope.node))}
    for stmt in list(scope.places):
        if not isinstance(stmt, cst.SimpleStatementLine) or not scope.loops_around(stmt):
            continue
        for small in stmt.body:
            store = _store(scope, small)
            if store is None:
                continue
            holder, value, form = store
            if holder in backpropagated or _head(holder) in backpropagated:
                continue  # accumulated on purpose: a backward walks it later
            if _metric_like(scope, holder, value):
                continue
            if _bounded_on_purpose(scope, holder):
                continue
            kept = _kept(analysis, scope, stmt, small, holder, value, form, training, order)
            if kept is not None:
                yield kept


_METRIC_WORDS = ("acc", "correct", "metric", "f1", "precision", "recall", "iou", "psnr", "ssim", "bleu")


def _metric_like(scope: Scope, holder: str, value: cst.BaseExpression) -> bool:
    """An accuracy or score (`acc_trk.append(batch_score.mean())`): computed from outputs by
    comparisons that carry no history, which the analysis cannot see inside an unknown function."""
    text = (holder + " " + scope.analysis.module.code_for_node(value)).lower()
    return "loss" not in text and any(word in text for word in _METRIC_WORDS)


def _bounded_on_purpose(scope: Scope, holder: str) -> bool:
    """A tensor accumulator the author reads through `.detach()` and re-creates in the loop
    (torchtune's `running_loss`, all-reduced at each optimizer step, logged as
    `running_loss.detach().item()` and reset): it holds a bounded window of graphs by design."""
    detached = any(
        isinstance(n, cst.Call) and isinstance(n.func, cst.Attribute) and n.func.attr.value == "detach"
        and dotted(n.func.value) == holder
        for n in walk(scope.node)
    )
    return detached and any(
        isinstance(n, cst.Assign) and any(dotted(t.target) == holder for t in n.targets)
        and holder not in set(_names(n.value))
        for loop in loops_of(scope) for n in walk(loop.body)
    )


def _head(key: str) -> str:
    return key if key.startswith("self.") else key.split(".")[0]


def _store(scope: Scope, small: cst.CSTNode) -> Optional[Tuple[str, cst.BaseExpression, str]]:
    """(holder, stored value, form) when the small statement accumulates or stores a value."""
    if isinstance(small, cst.AugAssign) and isinstance(small.operator, (cst.AddAssign, cst.SubtractAssign)):
        target = small.target
        if isinstance(target, cst.Subscript):
            base = _holder_key(target.value)
            if base is None or not _plain_container(scope, base):
                return None
            return base, small.value, "accumulate"
        key = _holder_key(target)
        return (key, small.value, "accumulate") if key is not None else None
    if isinstance(small, cst.Assign) and len(small.targets) == 1:
        target = small.targets[0].target
        value = small.value
        if isinstance(target, cst.Subscript):
            base = _holder_key(target.value)
            if base is None or not _plain_container(scope, base):
                return None
            return base, value, "store"
        key = _holder_key(target)
        if key is None or not isinstance(value, cst.BinaryOperation) or not isinstance(value.operator, cst.Add):
            return None
        for own, other in ((value.left, value.right), (value.right, value.left)):
            if _holder_key(own) == key:
                return key, other, "accumulate"
        return None
    if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
        call = small.value
        func = call.func
        if not isinstance(func, cst.Attribute) or func.attr.value not in LIST_STORES:
            return None
        receiver = func.value
        if isinstance(receiver, cst.Subscript):
            receiver = receiver.value  # history[key].append(loss)
        key = _holder_key(receiver)
        args = [a for a in call.args if a.keyword is None and not a.star]
        if key is None or not args or len(args) != (2 if func.attr.value == "insert" else 1):
            return None
        return key, args[-1].value, "append"
    return None


def _holder_key(expr: cst.BaseExpression) -> Optional[str]:
    """A plain name or a `self.` attribute chain."""
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        text = dotted(expr)
        if text is not None and text.startswith("self."):
            return text
    return None


def _plain_container(scope: Scope, key: str) -> bool:
    """Is `key` bound (somewhere in the scope) to a dict or list display or factory?"""
    for definition in scope.defs.get(key, ()):
        value = getattr(definition.node, "value", None)
        if isinstance(value, (cst.Dict, cst.List, cst.DictComp, cst.ListComp)):
            return True
        if isinstance(value, cst.Call):
            name = dotted(value.func)
            if name is not None and name.split(".")[-1] in _CONTAINER_FACTORIES:
                return True
    return False


def _kept(analysis, scope: Scope, stmt, small, holder: str, value: cst.BaseExpression, form: str, training, order) -> Optional[KeptHistory]:
    reads = analysis.reads.reads(value)
    if reads.kind in (INERT, LEAF) or under_no_grad(scope, stmt):
        return None
    stored = feeding_definitions(scope, value, order.get(small, -1), order)
    for loop in scope.loops_around(stmt):  # innermost first
        if assigns_before(scope, stmt, loop, holder) or holder in scope.reset_after(stmt, loop, set()):
            return None  # a new holder each iteration of this loop
        calls = training.get(loop)
        if not calls:
            # The innermost loop around the store runs no backward (an evaluation or test loop
            # nested in a fold or epoch loop): names there may only look like the training ones.
            return None
        inside = {id(d) for defs in defined_in(scope, loop).values() for d in defs}
        for later in calls:
            if later.tensor is None:
                continue
            walked = feeding_definitions(scope, later.tensor, order.get(later.node, -1), order)
            if any(key in inside for key in stored & walked):
                scalar = _scalar_root(value, later)
                return KeptHistory(small, holder, value, form, scalar, scalar and only_shown(scope, holder))
    return None


def feeding_definitions(scope: Scope, expr: cst.BaseExpression, before: int, order: Dict[cst.CSTNode, int]) -> Set[int]:
    """Ids of the definitions whose history flows into `expr` evaluated at position `before`: for
    each name read, its last definition before that position in source order (a straight-line
    approximation of reaching definitions), followed through everything that is not history-free.
    Two values share a graph when these sets meet."""
    out: Set[int] = set()
    todo: List[Tuple[str, int]] = [(k, before) for k in scope.analysis.reads.reads(expr).keys]
    seen: Set[Tuple[str, int]] = set()
    while todo:
        key, at = todo.pop()
        if (key, at) in seen:
            continue
        seen.add((key, at))
        limit = at + 1 if key.startswith("<unpacked@") else at
        earlier = [d for d in scope.defs.get(key, ()) if order.get(d.node, -1) < limit]
        if not earlier:
            continue
        latest = max(earlier, key=lambda d: order.get(d.node, -1))
        if scope.inert_definition(latest) or latest.loop_target is not None:
            continue
        out.add(id(latest))
        where = order.get(latest.node, -1)
        todo.extend((k, where) for k in latest.reads.keys)
    return out


def _scalar_root(value: cst.BaseExpression, later) -> bool:
    """Is the stored value a plain name that a backward starts from without `gradient=` (so a
    one-element tensor, which `.item()` turns into its number)?"""
    backward = later.backward
    if backward is None or backward.tensor is None or backward.gradient is not None:
        return False
    return isinstance(value, cst.Name) and isinstance(backward.tensor, cst.Name) and backward.tensor.value == value.value


def only_shown(scope: Scope, holder: str) -> bool:
    """Is every read of `holder` in the scope an argument shown to a person (print, logging,
    f-strings, `.format`), or a store into the holder itself?"""
    for stmt in scope.body:
        if not _reads_only_shown(stmt, holder, False):
            return False
    return True


def _reads_only_shown(node: cst.CSTNode, holder: str, showing: bool) -> bool:
    if isinstance(node, (cst.Name, cst.Attribute)) and dotted(node) == holder:
        return showing
    if isinstance(node, SCOPES):
        return holder not in set(_names(node)) or holder.startswith("self.")
    if isinstance(node, (cst.Assign, cst.AugAssign, cst.AnnAssign)):
        targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
        if any(dotted(t) == holder for t in targets):
            value = node.value
            if value is None:
                return True
            if isinstance(value, cst.BinaryOperation) and holder in (dotted(value.left), dotted(value.right)):
                other = value.right if dotted(value.left) == holder else value.left
                return _reads_only_shown(other, holder, showing)
            return _reads_only_shown(value, holder, showing)
    if isinstance(node, cst.Call):
        func = node.func
        name = dotted(func) or ""
        last = name.split(".")[-1]
        if isinstance(func, cst.Attribute) and dotted(func.value) == holder:
            if last in LIST_STORES:  # holder.append(...): its own store
                return all(_reads_only_shown(a.value, holder, showing) for a in node.args)
        if last in _SHOWING or (isinstance(func, cst.Attribute) and last in ("format", "set_postfix", "log")):
            return all(_reads_only_shown(a.value, holder, True) for a in node.args)
    if isinstance(node, cst.FormattedString):
        showing = True
    return all(_reads_only_shown(child, holder, showing) for child in children(node))


# --------------------------------------------------------------------------------------------
# GL008: graphs carried into the next iteration


def carried_states(analysis: GraphAnalysis, module: cst.Module) -> List[CarriedState]:
    found: List[CarriedState] = []
    classes = _classes_by_name(module)
    seen: Set[cst.Call] = set()
    for scope in analysis.scopes:
        for loop in loops_of(scope):
            for state in _carried_in_loop(analysis, scope, loop, classes):
                if state.backward.node not in seen:
                    seen.add(state.backward.node)
                    found.append(state)
    return found


def _carried_in_loop(analysis, scope: Scope, loop: Loop, classes) -> Iterator[CarriedState]:
    calls = [later for later in scope.calls_within(block_statements(loop.body)) if later.backward is not None]
    if not calls:
        return
    carried = scope.carried(loop)
    if not carried:
        return
    inside = defined_in(scope, loop)
    cut = _cut_in_loop(scope, loop)
    candidates: Dict[str, cst.CSTNode] = {}
    targets = _target_names(loop.target) if isinstance(loop, cst.For) else set()
    for key in sorted(carried):
        if key in cut or key not in inside or key in targets:
            continue  # detached, not produced in the loop, or rebound by the loop header itself
        producer = _recurrence(analysis, scope, key, inside[key], classes)
        if producer is not None and not _definitely_bound_before(scope, producer, loop, key):
            candidates[key] = producer
    if not candidates:
        return
    order = {node: index for index, node in enumerate(walk(scope.node))}
    for later in calls:
        backward = later.backward
        stmt = analysis.statement_of.get(later.node)
        if stmt is None or backward.tensor is None:
            continue
        if backward.create_graph is not None and not is_false(backward.create_graph):
            continue  # higher-order / unrolled optimisation keeps its graphs on purpose
        if under_no_grad(scope, stmt):
            continue
        deps = carried_reads(scope, backward.tensor, later.node, loop, order)
        reset = scope.reset_after(stmt, loop, set())
        for key, producer in candidates.items():
            if key in deps and key not in reset and not _reset_in_branch(scope, stmt, loop, key):
                yield CarriedState(backward, key, producer, is_true(backward.retain_graph))
                break


def carried_reads(scope: Scope, expr: cst.BaseExpression, at: cst.CSTNode, loop: Loop, order: Dict[cst.CSTNode, int]) -> Set[str]:
    """Names whose value from *before this iteration* flows into `expr` evaluated at `at`: the
    backward's root is traced through the last definition before each use (in source order) while
    that definition lies in this iteration of `loop`; a name read with no such definition comes
    from the previous iteration (or from before the loop)."""
    start = order.get(loop, -1)
    out: Set[str] = set()
    todo: List[Tuple[str, int]] = [(k, order.get(at, -1)) for k in scope.analysis.reads.reads(expr).keys]
    seen: Set[Tuple[str, int]] = set()
    while todo:
        key, where = todo.pop()
        if (key, where) in seen:
            continue
        seen.add((key, where))
        # The shared value of `a, b = f(...)` is defined by the same statement as `a` and `b`.
        limit = where + 1 if key.startswith("<unpacked@") else where
        earlier = [d for d in scope.defs.get(key, ()) if start < order.get(d.node, -1) < limit]
        if not earlier:
            out.add(key)
            continue
        latest = max(earlier, key=lambda d: order.get(d.node, -1))
        if scope.inert_definition(latest) or latest.loop_target is not None:
            continue
        todo.extend((k, order.get(latest.node, -1)) for k in latest.reads.keys)
    return out


def _recurrence(analysis, scope: Scope, key: str, definitions, classes) -> Optional[cst.CSTNode]:
    """The in-loop statement computing `key` from its own previous value with history (a recurrent
    step `out, h = model(x, h)`, `h = torch.tanh(W @ x + U @ h)`, `total = total + loss`), or None."""
    for definition in definitions:
        if scope.inert_definition(definition):
            continue
        keys = set(definition.reads.keys)
        opaque = definition.reads.opaque
        node = definition.node
        for shared in [k for k in keys if k.startswith("<unpacked@")]:
            keys.discard(shared)
            for inner in scope.defs.get(shared, ()):
                keys |= inner.reads.keys
                opaque = opaque or inner.reads.opaque
                node = inner.node
        if key not in keys and _head(key) not in keys:
            continue
        others = [k for k in keys if k != key and k != _head(key)]
        if not opaque and not any(scope.class_of(k) != INERT for k in others):
            continue  # a view or copy of itself (`h = h.unsqueeze(1)`, `x = x.to(device)`), not a new step
        value = getattr(node, "value", None)
        if isinstance(value, cst.Call) and _forward_detaches(scope, value.func, classes):
            continue
        return node
    return None


def _definitely_bound_before(scope: Scope, small: cst.CSTNode, loop: Loop, key: str) -> bool:
    """Is `key` bound afresh on every path from the top of the loop body to `small` (branches that
    raise, return or continue count as binding it)? Then no previous iteration reaches it there."""
    line = next((s for s in scope.places if isinstance(s, cst.SimpleStatementLine) and small in s.body), None)
    if line is None:
        return False
    for node, place in scope.enclosing(line):
        if any(_binds_on_all_paths(scope, earlier, key) for earlier in place.block[: place.index]):
            return True
        if place.parent is loop:
            break
    return False


def _binds_on_all_paths(scope: Scope, stmt: cst.CSTNode, key: str) -> bool:
    if isinstance(stmt, cst.SimpleStatementLine):
        for small in stmt.body:
            if isinstance(small, (cst.Raise, cst.Return, cst.Continue, cst.Break)):
                return True
            if isinstance(small, cst.Assign) and any(key in _target_names(t.target) for t in small.targets):
                if key not in set(_names(small.value)):
                    return True
        return False
    if isinstance(stmt, cst.If):
        if stmt.orelse is None:
            return False
        other = [stmt.orelse] if isinstance(stmt.orelse, cst.If) else block_statements(stmt.orelse.body)
        return _block_binds(scope, block_statements(stmt.body), key) and _block_binds(scope, other, key)
    if isinstance(stmt, cst.With):
        return _block_binds(scope, block_statements(stmt.body), key)
    return False


def _block_binds(scope: Scope, block, key: str) -> bool:
    return any(_binds_on_all_paths(scope, stmt, key) for stmt in block)


def _cut_in_loop(scope: Scope, loop: Loop) -> Set[str]:
    """Names the loop body detaches somewhere (`h = h.detach()`, `h.detach_()`, `h = repackage_hidden(h)`,
    `h = h.data`, `h = tuple(v.detach() for v in h)`) or clears in place (`h.clear()`, `del h[:]`)."""
    cut: Set[str] = set()
    reads = scope.analysis.reads
    for stmt in scope.statements_within(block_statements(loop.body)):
        for small in smalls_of(scope, stmt):
            if isinstance(small, cst.Assign):
                value = reads.reads(small.value)
                if value.kind == INERT and _detaching_text(small.value, reads.detaching):
                    for target in small.targets:
                        cut |= _target_names(target.target)
            elif isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
                func = small.value.func
                if isinstance(func, cst.Attribute) and func.attr.value in ("detach_", "clear"):
                    key = dotted(func.value)
                    if key:
                        cut.add(key)
            elif isinstance(small, cst.Del):
                targets = small.target.elements if isinstance(small.target, (cst.Tuple, cst.List)) else [small.target]
                for element in targets:
                    base = getattr(element, "value", element) if isinstance(element, cst.BaseElement) else element
                    while isinstance(base, cst.Subscript):
                        base = base.value
                    key = dotted(base) if isinstance(base, (cst.Name, cst.Attribute)) else None
                    if key:
                        cut.add(key)
    return cut


def _detaching_text(expr: cst.BaseExpression, detaching: FrozenSet[str]) -> bool:
    """Does the expression cut a graph (`.detach()`, `.data`, a detaching helper of the file, any
    callee named like one), rather than build a new value?"""
    for node in walk(expr):
        if isinstance(node, cst.Call):
            name = dotted(node.func) or ""
            last = name.split(".")[-1]
            if "detach" in last.lower() or "repackage" in last.lower() or last in detaching:
                return True
        if isinstance(node, cst.Attribute) and node.attr.value == "data":
            return True
    return False


def _reset_in_branch(scope: Scope, stmt: cst.CSTNode, loop: Loop, key: str) -> bool:
    """Is `key` re-created or cleared after the backward in the blocks that hold it (the same `if`
    branch as an every-k-steps backward: `loss.backward(); ...; log_probs = []`)?"""
    for node, place in scope.enclosing(stmt):
        for later in place.block[place.index + 1 :]:
            # Only unconditional statements of the blocks around the backward: a reset under
            # `if done:` leaves every other step carrying the graph.
            for small in smalls_of(scope, later):
                if isinstance(small, cst.Assign) and any(key in _target_names(t.target) for t in small.targets):
                    if key not in set(_names(small.value)):
                        return True
                if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
                    func = small.value.func
                    if isinstance(func, cst.Attribute) and func.attr.value in ("clear", "detach_"):
                        if dotted(func.value) == key:
                            return True
        if place.parent is loop:
            break
    return False


def _classes_by_name(module: cst.Module) -> Dict[str, cst.ClassDef]:
    return {node.name.value: node for node in walk(module, COMPREHENSIONS) if isinstance(node, cst.ClassDef)}


def _forward_detaches(scope: Scope, func: cst.BaseExpression, classes: Dict[str, cst.ClassDef]) -> bool:
    """Is the callee an instance of a class of this file whose `forward` detaches what it carries?"""
    callee = dotted(func)
    if callee is None:
        return False
    owner = _class_of_instance(scope, callee, classes)
    if owner is None:
        return False
    for stmt in block_statements(owner.body):
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value in ("forward", "__call__"):
            code = cst.Module(body=[stmt]).code
            return any(word in code for word in _DETACH_WORDS)
    return False


def _class_of_instance(scope: Scope, callee: str, classes: Dict[str, cst.ClassDef]) -> Optional[cst.ClassDef]:
    """`model` bound to `RNNModel(...)` (or `RNNModel(...).to(device)`), or `self.rnn` set to one anywhere."""
    if callee in classes:
        return None  # constructing, not calling an instance
    current: Optional[Scope] = scope
    while current is not None:
        for definition in current.defs.get(callee, ()):
            value = getattr(definition.node, "value", None)
            while isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and isinstance(value.func.value, cst.Call):
                value = value.func.value
            if isinstance(value, cst.Call):
                name = dotted(value.func)
                if name is not None and name.split(".")[-1] in classes:
                    return classes[name.split(".")[-1]]
        current = current.outer
    if callee.startswith("self."):
        for node in walk(scope.analysis.module):
            if isinstance(node, cst.Assign) and any(dotted(t.target) == callee for t in node.targets):
                value = node.value
                if isinstance(value, cst.Call):
                    name = dotted(value.func)
                    if name is not None and name.split(".")[-1] in classes:
                        return classes[name.split(".")[-1]]
    return None

"""How long a training loop's graphs live: the scopes GL006-GL008 share, and GL006's fact.

Both questions are about a *training loop* (a `for`/`while` whose body runs a backward) and a value
that lives on from one iteration into the next:

- `kept_histories`: a statement that stores a tensor with history that the loop's backward also
  walks (the loss, a scaled copy, an output) into something that outlives the iteration:
  `running_loss += loss`, `total = total + loss`, `losses.append(loss)`, `history[k] = loss`. Each
  stored tensor holds its whole graph, so every iteration's graph stays alive (GL006).
- carried states (GL008) live in `gradlint.analysis.carried` and share the helpers here.

Everything is read off the def-use scopes GL002 builds (`graphs.GraphAnalysis`/`Scope`: the class of
each name, closures of what flows into a backward root, what a loop body carries). Where those
facts leave a doubt the analysis stays silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple, Union

import libcst as cst

from gradlint.analysis.backward import backward_call
from gradlint.analysis.defuse import Definition
from gradlint.analysis.entries import different_entries
from gradlint.analysis.graph_scope import Scope
from gradlint.analysis.retained import GraphAnalysis
from gradlint.analysis.helpers import backward_helpers
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.reads import GRAPH, INERT, LEAF, LOGGING_METHODS, is_false, key_of
from gradlint.analysis.tree import SCOPES, block_statements, children, preorder, typed, walk

Loop = Union[cst.For, cst.While]

# Methods that put a value into a list-like container that outlives the statement.
LIST_STORES = frozenset({"append", "extend", "insert", "appendleft"})
# Calls that build a plain Python container (not a tensor buffer).
_CONTAINER_FACTORIES = frozenset({"list", "dict", "defaultdict", "OrderedDict", "deque", "Counter"})
# Calls whose arguments are only shown to a person (their value is not kept as a tensor).
_SHOWING = frozenset({"print", "str", "repr", "format", "round", "float", "int", "len"}) | LOGGING_METHODS
# Methods that make a tensor a number or a detached copy.
_TO_NUMBER = frozenset({"item", "tolist", "detach", "cpu", "numpy", "__format__"})




@dataclass(frozen=True)
class KeptHistory:
    """A store that keeps a graph alive past its iteration."""

    statement: cst.CSTNode  # the small statement: AugAssign, Assign or the Expr of `x.append(v)`
    holder: str  # what outlives the iteration: `running_loss`, `losses`, `self.history`
    value: cst.BaseExpression  # the stored expression
    form: str  # "accumulate" | "append" | "store"
    scalar: bool  # `value` is the (scalar) root of a backward: `.item()` gives its number
    item_fix: bool  # `.item()` on `value` is a safe fix (a scalar root, the holder only shown)
    backward: cst.CSTNode  # the backward call whose graph the stored value shares


# --------------------------------------------------------------------------------------------
# Building the scopes


@dataclass(frozen=True)
class Survey:
    """What one pass over a module tells before any scope is built: which functions and classes
    can hold a training loop, and whether the questions of GL006-GL008 can have an answer."""

    holders: Optional[Set[cst.CSTNode]]  # around a backward-like call (None when there is none)
    loop_backward: bool  # a real backward call inside the body of a `for`/`while`
    leaf_backward: bool  # a real backward call, and `requires_grad` named (attribute or keyword)


def survey(module: cst.Module, imports: ImportMap, backward_functions: Tuple[str, ...]) -> Survey:
    """One walk of the module (see `Survey`). Kept histories and carried states need a loop whose
    body runs a backward (`calls_within(loop.body)` with `.backward`); a made leaf needs a
    `requires_grad` attribute or keyword and a backward; without those the scopes need not be
    built at all."""
    helpers = backward_helpers(module, imports)
    configured = {f.split(".")[-1] for f in backward_functions}
    holders: Set[cst.CSTNode] = set()
    found = loop_backward = real_backward = leaf_word = False
    # One pass in walk order: the definitions around a node are those whose subtree (index range)
    # holds it, and it is in a loop body when some open loop body's range holds it.
    order, ends, at = preorder(module)
    around: List[Tuple[int, cst.CSTNode]] = []  # (end of its subtree, def or class), innermost last
    # (start, end) of the loop bodies opened and not yet left, innermost last; the innermost may
    # not have started (the walk is in its loop's target or iterable), the others have.
    bodies: List[Tuple[int, int]] = []
    node: Any
    for index, node in enumerate(order):
        while around and around[-1][0] <= index:
            around.pop()
        while bodies and bodies[-1][1] <= index:
            bodies.pop()
        kind = type(node)
        if kind is cst.Call:
            name = dotted(node.func)
            last = name.split(".")[-1] if name else ""
            real = backward_call(node, imports) is not None
            if real:
                real_backward = True
                loop_backward = loop_backward or len(bodies) > 1 or bool(bodies) and bodies[-1][0] <= index
            if real or last in helpers or last in configured:
                found = True
                holders.update(n for _, n in around)
        elif kind is cst.FunctionDef or kind is cst.ClassDef:
            around.append((ends[index], node))
        elif kind is cst.Attribute:
            leaf_word = leaf_word or node.attr.value in _LEAF_WORDS
        elif kind is cst.Arg:
            keyword = node.keyword
            leaf_word = leaf_word or (keyword is not None and keyword.value == "requires_grad")
        elif kind is cst.For or kind is cst.While:
            start = at[id(node.body)]
            bodies.append((start, ends[start]))
    return Survey(holders if found else None, loop_backward, real_backward and leaf_word)


# The names a made leaf is spelt with: `x.requires_grad = True`, `x.requires_grad_()` (and the
# `requires_grad=True` keyword, checked on arguments).
_LEAF_WORDS = frozenset({"requires_grad", "requires_grad_"})


def build_analysis(
    module: cst.Module, imports: ImportMap, backward_functions: Tuple[str, ...],
    holders: Optional[Set[cst.CSTNode]] = None,
) -> Optional[GraphAnalysis]:
    """GL002's scopes for the functions that run a backward, or None when none does. `holders`:
    those functions and classes, when a `survey` found them already."""
    if holders is None:
        holders = survey(module, imports, backward_functions).holders
    if holders is None:
        return None
    try:
        return GraphAnalysis(module, imports, backward_functions, holders)
    finally:
        _forget_bindings()


def _forget_bindings() -> None:
    # `pure_functions` memoises assignment targets per tree; keep no tree alive after the file.
    from gradlint.analysis.bindings import _ASSIGNED

    _ASSIGNED.clear()


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
        keys |= {k for k in names_of(later.tensor)}
    elif later.roots is not None:
        keys = set(later.roots)
    else:
        return set()
    return scope.closure(keys) | keys


def names_of(expr: cst.CSTNode) -> Iterator[str]:
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
    for _node, place in scope.enclosing(stmt):
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
    for _node, place in scope.enclosing(stmt):
        for earlier in place.block[: place.index]:
            if _binds_afresh(scope, earlier, key):
                return True
        if place.parent is loop:
            return False
        if isinstance(place.parent, cst.For) and key in target_names(place.parent.target):
            return True
    return False


def _binds_afresh(scope: Scope, stmt: cst.CSTNode, key: str) -> bool:
    for inner in scope.statements_within([stmt]):
        if isinstance(inner, cst.For) and key in target_names(inner.target):
            return True
        if isinstance(inner, cst.With):
            for item in inner.items:
                if item.asname is not None and key in target_names(item.asname.name):
                    return True
        for small in smalls_of(scope, inner):
            if isinstance(small, (cst.Assign, cst.AnnAssign)) and small.value is not None:
                targets = [t.target for t in small.targets] if isinstance(small, cst.Assign) else [small.target]
                if any(key in target_names(t) for t in targets) and key not in set(names_of(small.value)):
                    return True
    return False


def target_names(target: cst.BaseExpression) -> Set[str]:
    if isinstance(target, (cst.Name, cst.Attribute)):
        text = dotted(target)
        return {text} if text else set()
    if isinstance(target, (cst.Tuple, cst.List)):
        out: Set[str] = set()
        for element in target.elements:
            out |= target_names(element.value)
        return out
    if isinstance(target, cst.StarredElement):
        return target_names(target.value)
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
        # numbers, and what it keeps is its own business. One that builds a graph of its gradients
        # (`create_graph=True`: MAML's inner loop, a gradient penalty) keeps graphs on purpose, for
        # the higher-order backward that walks them.
        calls = [later for later in scope.calls_within(block_statements(loop.body))
                 if later.backward is not None
                 and (later.backward.create_graph is None or is_false(later.backward.create_graph))]
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
            if holder in backpropagated or head_of(holder) in backpropagated:
                continue  # accumulated on purpose: a backward walks it later
            if _metric_like(analysis.module, holder, value):
                continue
            if _bounded_on_purpose(scope, holder):
                continue
            kept = _kept(analysis, scope, stmt, small, holder, value, form, training, order)
            if kept is not None:
                yield kept


_METRIC_WORDS = (
    "acc", "correct", "metric", "f1", "precision", "recall", "iou", "psnr", "ssim", "bleu", "top1", "top5", "topk",
)


def _computed_by_metric(module: cst.Module, scope: Scope, keys, stored: Dict[int, Definition]) -> bool:
    """Is a name the stored value reads defined by a metric (`top1, top5 = correct_num(logits, y)`)?"""
    for definition in stored.values():
        if definition.key in keys or definition.key.startswith("<unpacked@"):
            text = module.code_for_node(definition.node).lower()
            if "loss" not in text and any(word in text for word in _METRIC_WORDS):
                return True
    return False


def _metric_like(module: cst.Module, holder: str, value: cst.BaseExpression) -> bool:
    """An accuracy or score (`acc_trk.append(batch_score.mean())`): computed from outputs by
    comparisons that carry no history, which the analysis cannot see inside an unknown function."""
    text = (holder + " " + module.code_for_node(value)).lower()
    return "loss" not in text and any(word in text for word in _METRIC_WORDS)


def _bounded_on_purpose(scope: Scope, holder: str) -> bool:
    """A tensor accumulator the author reads through `.detach()` and re-creates in the loop
    (torchtune's `running_loss`, all-reduced at each optimizer step, logged as
    `running_loss.detach().item()` and reset): it holds a bounded window of graphs by design."""
    detached = any(
        type(n.func) is cst.Attribute and n.func.attr.value == "detach"  # type: ignore[attr-defined]
        and dotted(n.func.value) == holder  # type: ignore[attr-defined]
        for n in typed(scope.node, cst.Call)
    )
    return detached and any(
        any(dotted(t.target) == holder for t in n.targets)  # type: ignore[attr-defined]
        and holder not in set(names_of(n.value))  # type: ignore[attr-defined]
        for loop in loops_of(scope) for n in typed(loop.body, cst.Assign)
    )


def head_of(key: str) -> str:
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
            if base is None or not _plain_container(scope, base) or _constant_index(target):
                return None  # `latest["loss"] = loss` overwrites one slot: one graph at a time
            return base, value, "store"
        key = _holder_key(target)
        if key is None:
            return None
        added = _added(key, value)
        return (key, added, "accumulate") if added is not None else None
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


def _constant_index(target: cst.Subscript) -> bool:
    """`d["loss"]`, `buf[0]`, `grid[0, 1]`: every index a literal, the same slot every time."""
    def constant(node: cst.BaseExpression) -> bool:
        if isinstance(node, (cst.SimpleString, cst.Integer, cst.Float, cst.ConcatenatedString)):
            return True
        if isinstance(node, cst.UnaryOperation):
            return constant(node.expression)
        if isinstance(node, cst.Tuple):
            return all(constant(element.value) for element in node.elements)
        return False

    return bool(target.slice) and all(
        isinstance(element.slice, cst.Index) and constant(element.slice.value) for element in target.slice)


def _added(key: str, value: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    """What `key = value` adds to the old `key`: `loss` in `total = total + loss`, `0.1 * loss` in
    `ema = 0.9 * ema + 0.1 * loss`. A conditional expression adds what its accumulating branch
    adds (`ema = loss if ema is None else 0.9 * ema + 0.1 * loss`); the other branch replaces the
    holder, which keeps one graph, not one per iteration. When both branches accumulate, the whole
    expression is what the holder takes on."""
    if isinstance(value, cst.IfExp):
        found = [_added(key, branch) for branch in (value.body, value.orelse)]
        kept = [branch for branch in found if branch is not None]
        return kept[0] if len(kept) == 1 else (value if kept else None)
    if not isinstance(value, cst.BinaryOperation) or not isinstance(value.operator, cst.Add):
        return None
    for own, other in ((value.left, value.right), (value.right, value.left)):
        if any(_holder_key(part) == key for part in _unscaled(own)):
            return other  # `total = total + loss`, `ema = 0.9 * ema + 0.1 * loss`
    return None


def _unscaled(expr: cst.BaseExpression) -> List[cst.BaseExpression]:
    """`expr`, or for `0.9 * ema` / `ema * decay` both factors (one of them the accumulator)."""
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.Multiply, cst.Divide)):
        if all(isinstance(side, (cst.Integer, cst.Float, cst.Name, cst.Attribute)) for side in (expr.left, expr.right)):
            return [expr.left, expr.right]
    return [expr]


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


def _kept(
    analysis, scope: Scope, stmt, small, holder: str, value: cst.BaseExpression, form: str, training, order
) -> Optional[KeptHistory]:
    reads = analysis.reads.reads(value)
    if reads.kind in (INERT, LEAF) or under_no_grad(scope, stmt):
        return None
    stored = feeding_definitions(scope, value, order.get(small, -1), order)
    around = scope.loops_around(stmt)  # innermost first
    for depth, loop in enumerate(around):
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
            # A definition of a value with history that both read. The tuple a call returns does
            # not count by itself (`loss, stats = compute_loss(batch)`: the stats are usually numbers).
            shared = [stored[k] for k in set(stored) & set(walked) if k in inside]
            # Nor does a dict the call returns when the two read different entries of it
            # (`out["loss"].backward()`, `history.append(out["log"]["train_loss"])`).
            if any(
                scope.class_of(d.key) == GRAPH and not d.key.startswith("<unpacked@")
                and not different_entries(
                    analysis.module, analysis.reads, scope.node, d,
                    (value, stored.values()), (later.tensor, walked.values()),
                )
                for d in shared
            ):
                if _computed_by_metric(analysis.module, scope, reads.keys, stored):
                    return None
                if _reset_each_step(scope, stmt, around[depth:], holder):
                    return None
                scalar = _scalar_root(value, later)
                # `ema = loss if ema is None else ema + loss`: `.item()` on the added loss leaves the
                # first loss (and its graph) in the holder, so that fix is never the safe one.
                whole = not (isinstance(small, cst.Assign) and isinstance(small.value, cst.IfExp))
                return KeptHistory(small, holder, value, form, scalar, scalar and whole and only_shown(scope, holder),
                                   later.node)
    return None


def _reset_each_step(scope: Scope, stmt: cst.CSTNode, loops: List[Loop], holder: str) -> bool:
    """Do the graphs stored from `loops[0]` (a micro-batch loop, running backward without a step)
    die at each optimizer step? So when an enclosing loop binds `holder` afresh in each iteration
    and steps in it, with no step in the loops between: `micro_losses = []` per batch, filled once
    per micro-batch, logged after `optimizer.step()`. The holder then keeps the graphs of one
    step's micro-batches (already walked by their backward), not every iteration's."""
    for index, outer in enumerate(loops[1:], 1):
        if any(_steps(inner.body) for inner in loops[:index]):
            return False  # a step inside: the holder outlives training steps
        if assigns_before(scope, stmt, outer, holder):
            return _steps(outer.body)
    return False


def _steps(node: cst.CSTNode) -> bool:
    """Does `node` call a `.step(...)` (an optimizer's, a scaler's `scaler.step(opt)`)?"""
    return any(
        type(call.func) is cst.Attribute and call.func.attr.value == "step"  # type: ignore[attr-defined]
        for call in typed(node, cst.Call)
    )


def feeding_definitions(
    scope: Scope, expr: cst.BaseExpression, before: int, order: Dict[cst.CSTNode, int]
) -> Dict[int, Definition]:
    """The definitions (by id) whose history flows into `expr` evaluated at position `before`: for
    each name read, its last definition before that position in source order (a straight-line
    approximation of reaching definitions), followed through everything that is not history-free.
    Two values share a graph when these sets meet."""
    out: Dict[int, Definition] = {}
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
        out[id(latest)] = latest
        where = order.get(latest.node, -1)
        todo.extend((k, where) for k in latest.reads.keys)
    return out


def _scalar_root(value: cst.BaseExpression, later) -> bool:
    """Is the stored value a plain name that a backward starts from without `gradient=` (so a
    one-element tensor, which `.item()` turns into its number)?"""
    backward = later.backward
    if backward is None or backward.tensor is None or backward.gradient is not None:
        return False
    root = backward.tensor
    return isinstance(value, cst.Name) and isinstance(root, cst.Name) and root.value == value.value


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
    if isinstance(node, cst.Attribute) and dotted(node.value) == holder:
        return False  # `running_loss.item()`, `losses.mean`: used as a tensor, not a number
    if isinstance(node, cst.Subscript) and dotted(node.value) == holder:
        return False  # `losses[-1]`: its elements are used
    if isinstance(node, SCOPES):
        return holder not in set(names_of(node)) or holder.startswith("self.")
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

"""Walking one scope's statements in order, keeping the abstract value of each name.

Values flow by straight-line reaching definitions: a name assigned differently in the two arms of
an `if` is unknown afterwards (a module and its DataParallel wrap merge into the wrap); an arm that
ends in `return` or `raise` does not reach the code after the `if`, and an `if flag:` on a name
bound to `True`/`False` (a literal argument) walks one arm; a name assigned inside a loop is
unknown when the loop starts, except a DataParallel wrap the body leaves for the next round. A
loop over a data loader binds its target to the loader's batch. The walker records the roots of
the backward calls it meets and the values a function returns (for `analysis.summaries`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, cast

import libcst as cst

from gradlint.analysis.backward import BackwardCall, backward_call
from gradlint.analysis.batch_sources import is_loader
from gradlint.analysis.bindings import assigned_keys, forget, target_keys
from gradlint.analysis.evaluate import Evaluator
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.shapes import (
    DATA,
    OUTPUT,
    UNKNOWN,
    Flag,
    Helper,
    Instance,
    LossFn,
    Seq,
    Shape,
    Struct,
    Value,
    elements,
    is_per_gpu,
    merge,
    merge_envs,
    string_literal,
)
from gradlint.analysis.tree import COMPREHENSIONS, SCOPES, walk

Env = Dict[str, Value]
_TRY = (cst.Try, getattr(cst, "TryStar", cst.Try))
# Wrappers around an iterable that yield its items (or (index, item) pairs for enumerate).
_PASS_THROUGH = frozenset("tqdm iter cycle islice prefetch".split())
_LIST_MUTATORS = frozenset("extend insert pop remove clear reverse sort __setitem__ __delitem__".split())


@dataclass(frozen=True)
class BackwardShape:
    """A backward call and what is known about each root it starts from."""

    call: BackwardCall
    roots: Tuple[Tuple[cst.BaseExpression, Shape], ...]


def calls_in(node: cst.CSTNode) -> List[cst.Call]:
    """Calls inside an expression or statement, not inside nested scopes or comprehensions."""
    return [n for n in walk(node, SCOPES + COMPREHENSIONS) if isinstance(n, cst.Call)]


def root_expressions(tensor: cst.BaseExpression) -> List[cst.BaseExpression]:
    """`torch.autograd.backward([a, b])` starts from each element; otherwise from the tensor."""
    items = elements(tensor)
    return items if items is not None else [tensor]


def _carried_wraps(changed, before: Env, after_body: Env) -> Env:
    """Names the loop body leaves DataParallel-wrapped (perhaps under a condition) that the next
    round starts from: a wrap survives the merge with the value before the loop."""
    carried: Env = {}
    for key in changed:
        value = after_body.get(key)
        if isinstance(value, (Instance, LossFn)) and value.gathered and merge(before.get(key), value) == value:
            carried[key] = value
    return carried


class Walker:
    """Walks one scope's statements in order, keeping the value of each name, and records the roots
    of the backward calls it meets."""

    def __init__(self, evaluator: Evaluator, imports: ImportMap, record: Dict[cst.Call, BackwardShape], calls=None):
        self.evaluator = evaluator
        self.imports = imports
        self.record = record
        self.calls = calls  # arguments passed to the module's functions, for a second pass
        self.self_assignments: List[Tuple[str, Value]] = []  # (`self.x`, value) in flow order
        self.returns: List[Optional[Value]] = []  # value of each `return` met (None: bare return)
        self.return_nodes: List[cst.Return] = []  # the `return` statements, in the same order
        self.ended = False  # the statement just walked ended in `return` or `raise` on every path
        # Walk only the arm a known flag picks (`if is_train:`): for what a summarised call returns
        # with the arguments it is given; a scope whose backward calls are judged walks both arms
        # (a `USE_AMP = False` switch does not hide the other arm's backward).
        self.flags = False
        self.helpers = False  # inside a function: its nested plain functions are bound as `Helper`s

    def block(self, body, env: Env) -> Env:
        statements = body.body if isinstance(body, cst.BaseSuite) else body
        if isinstance(statements, cst.BaseSmallStatement):
            statements = [statements]
        for statement in statements:
            env = self.statement(statement, env)
            if self.ended:  # after `return` or `raise`: the rest of the block is not reached
                break
        return env

    def _scan(self, node: cst.CSTNode, env: Env) -> None:
        for call in calls_in(node):
            if self.calls is not None:
                self.calls.note(call, env, self.evaluator)
            found = backward_call(call, self.imports)
            if found is None or found.tensor is None:
                continue
            roots = root_expressions(found.tensor)
            shapes = tuple((root, self.evaluator.shape(root, env)) for root in roots)
            self.record[call] = BackwardShape(found, shapes)

    def statement(self, stmt: cst.CSTNode, env: Env) -> Env:
        if isinstance(stmt, cst.BaseSmallStatement):  # inside a one-line suite: `if c: x = y`
            return self.small(stmt, env)
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                env = self.small(small, env)
            return env
        if isinstance(stmt, cst.If):
            self._scan(stmt.test, env)
            orelse = stmt.orelse
            taken = self._known_test(stmt.test, env) if self.flags else None
            if taken is not None:  # `if is_train:` with `is_train=True` passed: one arm runs
                if taken:
                    return self.block(stmt.body, dict(env))
                if orelse is None:
                    return env
                if isinstance(orelse, cst.If):
                    return self.statement(orelse, dict(env))
                return self.block(orelse.body, dict(env))
            branches = [self._arm(stmt.body, env)]
            if orelse is None:
                branches.append((env, False))
            elif isinstance(orelse, cst.If):
                branches.append(self._arm(orelse, env))
            else:
                branches.append(self._arm(orelse.body, env))
            # an arm that ends in `raise` or `return` does not reach the code after the `if`
            live = [e for e, ended in branches if not ended]
            self.ended = not live
            return merge_envs(live or [e for e, _ in branches])
        if isinstance(stmt, (cst.For, cst.While)):
            if isinstance(stmt, cst.For):
                self._scan(stmt.iter, env)
            changed = assigned_keys(stmt.body) | (set(target_keys(stmt.target)) if isinstance(stmt, cst.For) else set())
            entry = forget(env, changed)
            if isinstance(stmt, cst.While):
                self._scan(stmt.test, entry)
            else:
                self._bind_loop_target(stmt.target, stmt.iter, env, entry)
            after_body = self.block(stmt.body, entry)
            self.ended = False  # the body may run zero times
            carried = _carried_wraps(changed, env, after_body)
            if carried:  # `model = nn.DataParallel(model)` late in the body: wrapped in later rounds
                after_body = self.block(stmt.body, {**entry, **carried})
                self.ended = False
            after = merge_envs([env, after_body])  # the body may run zero times
            if stmt.orelse is not None:
                after = self.block(stmt.orelse.body, after)
            return after
        if isinstance(stmt, cst.With):
            for item in stmt.items:
                self._scan(item.item, env)
                if item.asname is not None:
                    env = forget(env, target_keys(item.asname.name))
            env = self.block(stmt.body, env)
            self.ended = False  # a context manager may swallow what the body raises
            return env
        if isinstance(stmt, _TRY):
            stmt = cast(cst.Try, stmt)  # or TryStar: the same fields
            changed = assigned_keys(stmt.body)
            after_body = self.block(stmt.body, dict(env))
            self.ended = False  # a handler may continue after the try
            ends = []
            for handler in stmt.handlers:
                start = forget(env, changed | assigned_keys(handler))
                ends.append(self.block(handler.body, start))
                self.ended = False
            if stmt.orelse is not None:
                after_body = self.block(stmt.orelse.body, after_body)
                self.ended = False
            ends.append(after_body)
            merged = merge_envs(ends)
            if stmt.finalbody is not None:
                merged = self.block(stmt.finalbody.body, merged)
                self.ended = False
            return merged
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            env = forget(env, [stmt.name.value])
            if self.helpers and isinstance(stmt, cst.FunctionDef) and not stmt.decorators and not stmt.asynchronous:
                env[stmt.name.value] = Helper(stmt)  # a helper of this function, summarised where it is called
            return env
        # Anything else (match, async constructs...): forget what it assigns, scan it as a whole.
        changed = assigned_keys(stmt)
        env = forget(env, changed)
        self._scan(stmt, env)
        return env

    def _arm(self, body, env: Env) -> Tuple[Env, bool]:
        """Walk one arm of an `if` (a block, or the `elif` statement): its end, and whether it
        ends in `return` or `raise` on every path."""
        end = self.statement(body, dict(env)) if isinstance(body, cst.If) else self.block(body, dict(env))
        ended, self.ended = self.ended, False
        return end, ended

    def _known_test(self, test: cst.BaseExpression, env: Env) -> Optional[bool]:
        """The truth of `flag` or `not flag` for a name bound to `True`/`False` (a literal argument)."""
        negate = False
        while isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
            negate, test = not negate, test.expression
        if not isinstance(test, (cst.Name, cst.Attribute)):
            return None
        value = self.evaluator.value(test, env)
        return (value.value != negate) if isinstance(value, Flag) else None

    def _bind_loop_target(self, target: cst.BaseExpression, iterable: cst.BaseExpression, outer: Env, entry: Env):
        """`for x, y in loader`, `for i, batch in enumerate(tqdm(loader))`: the items are batches."""
        indexed = False
        while isinstance(iterable, cst.Call) and iterable.args and not iterable.args[0].keyword:
            name = dotted(iterable.func)
            last = name.rsplit(".", 1)[-1] if name else ""
            if last == "enumerate" and not indexed:
                indexed = True
            elif last not in _PASS_THROUGH:
                break
            iterable = iterable.args[0].value
        if not is_loader(iterable, outer, self.evaluator):
            return
        if indexed:
            if not (isinstance(target, (cst.Tuple, cst.List)) and len(target.elements) == 2):
                return
            target = target.elements[1].value
        for key in target_keys(target):
            entry[key] = DATA

    def small(self, small: cst.BaseSmallStatement, env: Env) -> Env:
        self._scan(small, env)
        if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
            return self._list_call(small.value, env)
        if isinstance(small, cst.Assign):
            value = self.evaluator.value(small.value, env)
            env = dict(env)
            for target in small.targets:
                if isinstance(target.target, cst.Subscript):
                    env = self._store_item(target.target, value, env)
                    continue
                self._bind(target.target, small.value, value, env)
            return env
        if isinstance(small, cst.AnnAssign) and small.value is not None:
            env = dict(env)
            self._bind(small.target, small.value, self.evaluator.value(small.value, env), env)
            return env
        if isinstance(small, cst.AugAssign):
            if isinstance(small.target, cst.Subscript):  # `losses["total"] += x`: not followed
                return forget(env, [k for k in [dotted(small.target.value)] if k is not None])
            keys = list(target_keys(small.target))
            env = dict(env)
            if len(keys) == 1 and isinstance(small.target, (cst.Name, cst.Attribute)):
                current = env.get(keys[0], UNKNOWN)
                other = self.evaluator.shape(small.value, env)
                op = "sub" if isinstance(small.operator, cst.SubtractAssign) else ""
                combined = self.evaluator.elementwise(
                    [current if isinstance(current, Shape) else UNKNOWN, other], op, small
                )
                if isinstance(small.operator, cst.MatrixMultiplyAssign):
                    combined = UNKNOWN
                env = forget(env, keys)
                env[keys[0]] = combined
                self._note_self(keys[0], combined)
            else:
                env = forget(env, keys)
            return env
        if isinstance(small, cst.Return):
            self.returns.append(self.evaluator.value(small.value, env) if small.value is not None else None)
            self.return_nodes.append(small)
            self.ended = True
            return env
        if isinstance(small, cst.Raise):
            self.ended = True
            return env
        changed = assigned_keys(small)
        return forget(env, changed) if changed else env

    def _list_call(self, call: cst.Call, env: Env) -> Env:
        """`losses.append(x)` on a list (or `nn.ModuleList`) of known items adds `x`; any other
        method that changes a list forgets its items."""
        func = call.func
        if not isinstance(func, cst.Attribute):
            return env
        key = dotted(func.value)
        if key is None or not isinstance(env.get(key), Seq):
            return env
        method = func.attr.value
        if method == "append" and len(call.args) == 1 and not call.args[0].keyword and not call.args[0].star:
            env = dict(env)
            env[key] = Seq(env[key].items + (self.evaluator.value(call.args[0].value, env),))  # type: ignore[union-attr]
            return env
        if method in _LIST_MUTATORS:
            return forget(env, [key])
        return env

    def _store_item(self, target: cst.Subscript, value: Value, env: Env) -> Env:
        """`record["key"] = value` on a known dict of values records the field (losses gathered
        key by key into a dict); any other item assignment (`items[i] = x`) forgets the container."""
        base = dotted(target.value)
        if base is None:
            return env
        record = env.get(base)
        items = target.slice
        single = len(items) == 1 and isinstance(items[0].slice, cst.Index)
        key = string_literal(items[0].slice.value) if single else None  # type: ignore[attr-defined]
        env = forget(env, [base])
        if isinstance(record, Struct) and key is not None:
            env[base] = record.with_field(key, value)
        return env

    def _bind(self, target: cst.BaseExpression, value_expr: Optional[cst.BaseExpression], value: Value, env) -> None:
        if isinstance(target, cst.Subscript):  # an item inside a tuple target: `(d["a"], d["b"]) = pair`
            updated = self._store_item(target, value, env)
            env.clear()
            env.update(updated)
            return
        keys = list(target_keys(target))
        for key in keys:
            for stale in [k for k in env if k == key or k.startswith(key + ".")]:
                env.pop(stale, None)
        if isinstance(target, (cst.Name, cst.Attribute)) and len(keys) == 1:
            env[keys[0]] = value
            self._note_self(keys[0], value)
            return
        targets = elements(target) if isinstance(target, (cst.Tuple, cst.List)) else None
        sources = elements(value_expr) if value_expr is not None else None
        if sources is not None and targets is not None and len(sources) == len(targets):
            for sub_target, sub_value in zip(targets, sources):
                self._bind(sub_target, sub_value, self.evaluator.value(sub_value, env), env)
        elif targets is not None and isinstance(value, Seq) and len(value.items) == len(targets):
            for sub_target, item in zip(targets, value.items):  # `_, loss = net(x)`
                self._bind(sub_target, None, item, env)
        elif targets is not None and (value in (DATA, OUTPUT) or is_per_gpu(value)):
            # `x, y = batch`; `values, aux = model(ids)`: each what the model returned for the
            # batch (a 0-dim loss among them stays unreported); `out, loss = dp_model(x)`: each gathered
            for key in keys:
                env[key] = value
            self._items_unknown(targets, env)
        else:
            for key in keys:
                self._note_self(key, UNKNOWN)
            self._items_unknown(targets or [], env)

    def _items_unknown(self, targets: List[cst.BaseExpression], env: Env) -> None:
        """Items of a tuple target (`(d["a"], d["b"]) = f()`) get values not known here."""
        for target in targets:
            if isinstance(target, cst.Subscript):
                self._bind(target, None, UNKNOWN, env)

    def _note_self(self, key: str, value: Value) -> None:
        if key.startswith("self."):
            self.self_assignments.append((key, value))

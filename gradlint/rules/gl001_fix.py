"""The GL001 fix: insert the missing clear as its own statement (an unsafe fix: it changes behaviour).

Where the clear goes, for the optimizer the finding names:

* right after the step the finding points to, when that step runs on every iteration in which it
  is reached (only `with` blocks and loops between it and the analysed loop or its function), or
  when it is gated on a `% k` accumulation period (the clear then goes inside the gate, so the
  intended accumulation stays);
* otherwise right before the reported backward, when the loop runs exactly one reported backward
  and runs it unconditionally;
* for a hand-written update (`p -= lr * p.grad`), `p.grad = None` right after the update.

The step's place may be in a helper of the same file; a helper in another module is never edited
(its call site in the loop is the place then). Where none of these is right, no fix is offered and
the caller says so in the message. Indentation, comments and line endings are kept: the new line
copies the indentation of its neighbour and uses the file's own line ending.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import libcst as cst

from gradlint.analysis.events import ALL, STEP, Event
from gradlint.analysis.manual_updates import PARAMS, updated_by_call, updated_by_statement
from gradlint.analysis.names import dotted
from gradlint.analysis.tree import children
from gradlint.findings import Edit, Fix

# Compound statements that run their body whenever they are reached (once or more).
_TRANSPARENT = (cst.With, cst.For, cst.While, cst.IndentedBlock, cst.SimpleStatementSuite)


def _path_to(root: cst.CSTNode, target: cst.CSTNode) -> Optional[List[cst.CSTNode]]:
    """The nodes from `root` down to `target` (both included), or None if it is not inside."""
    stack = [(root, [root])]
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        for child in children(node):
            stack.append((child, path + [child]))
    return None


def _statement(path: Sequence[cst.CSTNode]) -> Optional[int]:
    """Index in `path` of the innermost statement line, if it sits in an indented block."""
    for index in range(len(path) - 1, 0, -1):
        if isinstance(path[index], cst.SimpleStatementLine):
            return index if isinstance(path[index - 1], cst.IndentedBlock) else None
        if isinstance(path[index], cst.BaseCompoundStatement):
            return None  # the node is in a compound statement's header (`if opt.step():`)
    return None


def _gates(path: Sequence[cst.CSTNode], stop: int, below: int) -> Optional[List[cst.If]]:
    """The `if`s between path[stop] (excluded) and path[below] (excluded) that the statement is
    in, or None when something else conditional (`try`, `else`, `match`, a def) is in between."""
    found: List[cst.If] = []
    for node in path[stop + 1 : below]:
        if isinstance(node, cst.If):
            found.append(node)
        elif isinstance(node, cst.FunctionDef) or not isinstance(node, _TRANSPARENT):
            return None
    # an `if` whose `else`/`elif` holds the statement: the path goes through If.orelse
    for index in range(stop + 1, below):
        if isinstance(path[index], (cst.Else,)) or (
            isinstance(path[index], cst.If) and index > 0 and isinstance(path[index - 1], cst.If)
        ):
            return None
    return found


def _scope_index(path: Sequence[cst.CSTNode], loop: cst.CSTNode) -> int:
    """Index of the analysed loop in `path`, else of the innermost def (a helper of the file)."""
    for index, node in enumerate(path):
        if node is loop:
            return index
    for index in range(len(path) - 1, -1, -1):
        if isinstance(path[index], cst.FunctionDef):
            return index
    return 0


def _has_modulo(expr: cst.CSTNode) -> bool:
    stack: List[cst.CSTNode] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Modulo):
            return True
        if isinstance(node, cst.Call):
            return False
        stack.extend(children(node))
    return False


def _modulo_gate(test: cst.BaseExpression, scope: cst.CSTNode) -> bool:
    """Is `test` an accumulation period (`(i + 1) % k == 0`), directly or through a flag that
    `scope` assigns from one (`sync = (i + 1) % k == 0` ... `if sync:`)?"""
    while isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        test = test.expression
    if not isinstance(test, cst.Name):
        return _has_modulo(test)
    stack: List[cst.CSTNode] = [scope]
    values: List[cst.BaseExpression] = []
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Assign) and any(
            isinstance(t.target, cst.Name) and t.target.value == test.value for t in node.targets
        ):
            values.append(node.value)
        elif not isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda)) or node is scope:
            stack.extend(children(node))
    return bool(values) and all(_has_modulo(value) for value in values)


class _Inserter:
    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.code = ctx.module.code
        self.newline = ctx.module.default_newline

    def _line_start(self, line: int) -> int:
        return self.ctx.offset(line, 0)

    def _indent(self, line: int) -> str:
        start = self._line_start(line)
        end = start
        while end < len(self.code) and self.code[end] in " \t":
            end += 1
        return self.code[start:end]

    def after(self, stmt: cst.CSTNode, text: str) -> Edit:
        where = self.ctx.position(stmt)
        indent = self._indent(where.start.line)
        offset = self._line_start(where.end.line + 1)
        if offset >= len(self.code) and not self.code.endswith(("\n", "\r")):
            return Edit(len(self.code), len(self.code), self.newline + indent + text)
        return Edit(offset, offset, indent + text + self.newline)

    def before(self, stmt: cst.CSTNode, text: str) -> Edit:
        where = self.ctx.position(stmt)
        offset = self._line_start(where.start.line)
        return Edit(offset, offset, self._indent(where.start.line) + text + self.newline)


def _optimizer_text(ctx, node: cst.CSTNode) -> Optional[str]:
    """How a step written in this file spells its optimizer: its receiver (`self.opt_g.step()`),
    or for `scaler.step(opt)` / `xm.optimizer_step(opt)` its argument."""
    if not (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)):
        return None
    method = node.func.attr.value
    receiver = node.func.value
    positional = node.args[0].value if node.args and node.args[0].keyword is None else None
    if method == "optimizer_step":
        return ctx.code(positional) if positional is not None else None
    if method != "step":
        return None
    if "scaler" in (dotted(receiver) or "").rsplit(".", 1)[-1].lower():
        return ctx.code(positional) if positional is not None else None
    return ctx.code(receiver)


def build_fix(
    ctx, loop: cst.CSTNode, report: cst.CSTNode, step: Event, backward: Event, events: Sequence[Event], single: bool
) -> Optional[Fix]:
    """The fix for one GL001 finding, or None where no single place is right. `backward` is the
    reported backward, `events` the loop's; `single`: the loop runs only this one reported
    backward (so a clear right before it cannot drop another's)."""
    optimizer = step.target
    if optimizer == ALL:
        return None
    inserter = _Inserter(ctx)
    if optimizer == PARAMS:
        updates = [e for e in events if e.kind == STEP and e.target == PARAMS]
        return _manual_fix(ctx, inserter, updates)
    closure = _closure_fix(ctx, inserter, step, backward)
    if closure is not None:
        return closure
    step_node = step.local_node()
    path = _path_to(ctx.module, step_node)
    index = _statement(path) if path is not None else None
    if path is not None and index is not None:
        scope = _scope_index(path, loop)
        gates = _gates(path, scope, index) if scope < index else None
        if gates is not None and all(_modulo_gate(g.test, path[scope]) for g in gates):
            if step_node is step.node:  # the step is written in this file: after it
                text = _optimizer_text(ctx, step_node)
            elif any(node is loop for node in path):  # a helper of another module steps: after its call
                text = optimizer
            else:
                text = None
            if text:
                edit = inserter.after(path[index], f"{text}.zero_grad()")
                return Fix(f"Insert `{text}.zero_grad()` after the step", (edit,), applicability="unsafe")
    if not single:
        return None
    path = _path_to(loop, report)
    index = _statement(path) if path is not None else None
    if path is None or index is None or _gates(path, 0, index) != []:
        return None
    edit = inserter.before(path[index], f"{optimizer}.zero_grad()")
    return Fix(f"Insert `{optimizer}.zero_grad()` before the backward", (edit,), applicability="unsafe")


def _closure_fix(ctx, inserter: _Inserter, step: Event, backward: Event) -> Optional[Fix]:
    """`opt.step(closure)` whose closure (a def of this file) runs the backward: LBFGS evaluates
    the closure several times per step, so the clear goes first in the closure, before its backward."""
    node = step.node
    if not (step.local_node() is node and isinstance(node, cst.Call) and node.args):
        return None
    if len(backward.chain) < 2 or not all(local for _node, local in backward.chain):
        return None
    if backward.chain[-2][0] is not node:
        return None  # the backward is not reached through this step's closure
    path = _path_to(ctx.module, backward.node)
    index = _statement(path) if path is not None else None
    if path is None or index is None:
        return None
    scope = _scope_index(path, node)
    text = _optimizer_text(ctx, node)
    if not text or not isinstance(path[scope], cst.FunctionDef) or _gates(path, scope, index) != []:
        return None
    edit = inserter.before(path[index], f"{text}.zero_grad()")
    return Fix(f"Insert `{text}.zero_grad()` in the closure, before its backward", (edit,), applicability="unsafe")


def _manual_fix(ctx, inserter: _Inserter, updates: Sequence[Event]) -> Optional[Fix]:
    """`p.grad = None` after every hand-written update of the loop (each applies its own tensor's
    gradient), or None when one of them is not in this file or not a statement of its own."""
    edits: List[Edit] = []
    names: List[str] = []
    for step in updates:
        node = step.node
        if step.local_node() is not node:
            return None  # an update in another module's helper: no parameter name here
        tensor = updated_by_call(node) if isinstance(node, cst.Call) else updated_by_statement(node)
        path = _path_to(ctx.module, node)
        index = _statement(path) if path is not None and tensor else None
        if path is None or index is None or tensor is None:
            return None
        block = path[index - 1]
        if not isinstance(block, cst.IndentedBlock):
            return None  # (`_statement` found the line in an indented block: never the case)
        body: List[cst.CSTNode] = list(block.body)
        later = body[body.index(path[index]) + 1 :]
        if any(_reads_grad(stmt, tensor) for stmt in later):
            return None  # the gradient is still read after the update: clearing it here would break that
        edit = inserter.after(path[index], f"{tensor}.grad = None")
        if edit not in edits:
            edits.append(edit)
            names.append(tensor)
    if not edits:
        return None
    what = ", ".join(f"`{name}.grad = None`" for name in dict.fromkeys(names))
    return Fix(f"Insert {what} after the update", tuple(edits), applicability="unsafe")


def _reads_grad(stmt: cst.CSTNode, tensor: str) -> bool:
    stack: List[cst.CSTNode] = [stmt]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Attribute) and node.attr.value == "grad" and dotted(node.value) == tensor:
            return True
        stack.extend(children(node))
    return False

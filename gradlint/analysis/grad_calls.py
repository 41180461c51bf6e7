"""Calls and expressions that touch gradients without stepping, clearing or running a backward:
gradient clipping, GradScaler unscaling, and reads of `.grad`.

The ordering rules (clip-grad-misuse, gradients-cleared-before-step) need to know, from the syntax
alone, which call clips gradients and whose clipping knows about loss scaling, which GradScaler is
switched off by its construction, and which expression reads a gradient's value (a probe that logs
`p.grad.norm()` consumes the gradients a backward produced, `if p.grad is not None` does not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional

import libcst as cst

from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.tree import children, walk

# How a clip call treats loss scaling.
CLIP_TORCH = "torch"  # torch.nn.utils.clip_grad_norm_ & co, a module's (FSDP) .clip_grad_norm_: clips what it finds
CLIP_SCALE_AWARE = "scale-aware"  # accelerator / Fabric / Lightning clipping: unscales first by itself

_TORCH_CLIPS = frozenset({"clip_grad_norm_", "clip_grad_value_", "clip_grad_norm", "clip_grad_value",
                          "clip_grads_with_norm_"})
# Receivers whose `.clip_grad_norm_` unscales first (accelerate, Lightning Fabric).
_SCALE_AWARE_RECEIVERS = ("accelerator", "fabric")
# Receivers whose clipping is their own business and not torch's (DeepSpeed engines clip from
# their config; fairseq/apex optimizers clip their fp32 master gradients).
_OTHER_RECEIVERS = ("engine", "deepspeed", "optimizer", "optim", "opt", "scaler")
_INF_NAMES = frozenset({"math.inf", "numpy.inf", "np.inf", "torch.inf", "inf"})


@dataclass(frozen=True)
class Clip:
    """A gradient-clipping call: its flavour (CLIP_TORCH / CLIP_SCALE_AWARE) and whether its
    threshold is infinite (then it only measures the norm, for logging)."""

    flavour: str
    measures_only: bool


def clip_call(call: cst.Call, imports: ImportMap) -> Optional[Clip]:
    """Describe `call` if it clips gradients, else None.

    `torch.nn.utils.clip_grad_norm_` (any import form), `clip_grad_value_`, a module's or FSDP's
    `.clip_grad_norm_(max_norm)`, timm's `dispatch_clip_grad`; `accelerator.clip_grad_norm_`,
    `fabric.clip_gradients` and Lightning's `self.clip_gradients(opt, ...)` are scale-aware.
    """
    func = call.func
    if isinstance(func, cst.Name):
        qual = imports.resolve(func) or func.value
        last = qual.rsplit(".", 1)[-1]
        if last in _TORCH_CLIPS and (qual.startswith("torch.") or qual == last):
            return Clip(CLIP_TORCH, _threshold_is_inf(call, 1))
        if last == "dispatch_clip_grad" and qual.startswith("timm"):
            return Clip(CLIP_TORCH, _threshold_is_inf(call, 1))
        return None
    if not isinstance(func, cst.Attribute):
        return None
    method = func.attr.value
    receiver = func.value
    if method in _TORCH_CLIPS:
        qual = imports.resolve(receiver) or ""
        if qual.startswith("torch") or qual.endswith(("nn.utils", "utils.clip_grad", "clip_grad")):
            return Clip(CLIP_TORCH, _threshold_is_inf(call, 1))
        text = (dotted(receiver) or "").lower()
        last = text.rsplit(".", 1)[-1]
        if any(hint in last for hint in _SCALE_AWARE_RECEIVERS):
            return Clip(CLIP_SCALE_AWARE, _threshold_is_inf(call, 1 if "value" in method else 0))
        if not text or any(hint in last for hint in _OTHER_RECEIVERS):
            return None
        if method.startswith("clip_grad_norm"):
            # model.clip_grad_norm_(max_norm): FSDP (and modules that wrap torch's function)
            return Clip(CLIP_TORCH, _threshold_is_inf(call, 0))
        return None
    if method == "clip_gradients":
        text = (dotted(receiver) or "").lower()
        if text in ("self", "fabric", "self.fabric") or text.endswith((".fabric", "fabric")):
            return Clip(CLIP_SCALE_AWARE, False)
    return None


def _threshold_is_inf(call: cst.Call, position: int) -> bool:
    """Is the clipping threshold (max_norm / clip_value, at `position` or by keyword) infinite?"""
    value = None
    index = 0
    for arg in call.args:
        if arg.star:
            return False
        if arg.keyword is not None:
            if arg.keyword.value in ("max_norm", "clip_value", "max_value", "value", "gradient_clip_val"):
                value = arg.value
        else:
            if index == position:
                value = arg.value
            index += 1
    return value is not None and _is_inf(value)


def _is_inf(expr: cst.BaseExpression) -> bool:
    """`float("inf")`, `math.inf`, `np.inf`, `torch.inf`, `1e999`."""
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Name) and expr.func.value == "float":
        if len(expr.args) == 1 and isinstance(expr.args[0].value, cst.SimpleString):
            literal = expr.args[0].value.evaluated_value
            return isinstance(literal, str) and literal.strip().lower() in ("inf", "+inf", "infinity")
        return False
    if isinstance(expr, cst.Float):
        try:
            return math.isinf(float(expr.value.replace("_", "")))
        except ValueError:
            return False
    text = dotted(expr)
    return text in _INF_NAMES


def unscale_call(call: cst.Call) -> bool:
    """`scaler.unscale_(optimizer)`, `accelerator.unscale_gradients()`."""
    func = call.func
    return isinstance(func, cst.Attribute) and func.attr.value in ("unscale_", "unscale_gradients")


def scaled_backward_scaler(call: cst.Call) -> Optional[cst.BaseExpression]:
    """The scaler of `scaler.scale(loss).backward()` (also `scaler.scale(loss / k).backward()`)."""
    func = call.func
    if not (isinstance(func, cst.Attribute) and func.attr.value == "backward"):
        return None
    receiver = func.value
    if (
        isinstance(receiver, cst.Call)
        and isinstance(receiver.func, cst.Attribute)
        and receiver.func.attr.value == "scale"
        and receiver.args
        and receiver.args[0].keyword is None
    ):
        return receiver.func.value
    return None


# ---------------------------------------------------------------------------------------------
# GradScaler constructions
# ---------------------------------------------------------------------------------------------

SCALER_ON = "on"
SCALER_OFF = "off"


def scaler_states(module: cst.Module, imports: ImportMap) -> Dict[str, str]:
    """Expression text -> SCALER_ON / SCALER_OFF for every name bound to a GradScaler in the module.

    A scaler built with the literal `enabled=False` (or `enabled=0`) is off: its scale() and
    unscale_() do nothing. Any other `enabled=` (`args.amp`, `dtype == "float16"`) may be on, and
    is taken to be: the code is then wrong whenever mixed precision is switched on. A name bound
    to scalers of both kinds counts as on.
    """
    states: Dict[str, str] = {}
    falses = _always_false_names(module)
    for node in walk(module, (cst.Lambda,)):
        if type(node) is cst.Assign:
            targets = [t.target for t in node.targets]
            value = node.value
        elif type(node) is cst.AnnAssign and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        state = _scaler_state(value, imports, falses)
        if state is None:
            continue
        for target in targets:
            text = dotted(target)
            if text is not None and states.get(text) != SCALER_ON:
                states[text] = state
    return states


def _always_false_names(module: cst.Module) -> frozenset:
    """Names the module binds only to the literal False (`USE_AMP = False`), and never as a
    parameter, loop target or import."""
    false: set = set()
    other: set = set()
    for node in walk(module):
        kind = type(node)
        if kind is cst.Assign:
            is_false = isinstance(node.value, cst.Name) and node.value.value == "False"  # type: ignore
            for target in node.targets:  # type: ignore[attr-defined]
                if isinstance(target.target, cst.Name):
                    (false if is_false else other).add(target.target.value)
        elif kind is cst.Param:
            other.add(node.name.value)  # type: ignore[attr-defined]
        elif kind in (cst.AugAssign, cst.AnnAssign, cst.For, cst.NamedExpr):
            for inner in walk(node.target):  # type: ignore[attr-defined]
                if type(inner) is cst.Name:
                    other.add(inner.value)  # type: ignore[attr-defined]
    return frozenset(false - other)


def scaler_flags(module: cst.Module, imports: ImportMap) -> Dict[str, str]:
    """Expression text of a GradScaler's `enabled=` argument -> the text of the name it is bound
    to, for `scaler = GradScaler(enabled=args.amp)` (also `self.scaler = ...`, and a copy of the
    flag such as `self.use_amp = use_amp`): where the flag is false the scaler is off. Only names
    and attributes count as flags; a flag shared by scalers bound to different names maps to none
    of them."""
    flags: Dict[str, str] = {}
    shared: set = set()
    copies: List[tuple] = []  # (target text, value text) of `self.use_amp = use_amp`
    for node in walk(module, (cst.Lambda,)):
        if type(node) is not cst.Assign:
            continue
        if not isinstance(node.value, cst.Call):  # type: ignore[attr-defined]
            value = dotted(node.value)  # type: ignore[attr-defined]
            if value is not None:
                copies.extend((dotted(t.target), value) for t in node.targets)  # type: ignore[attr-defined]
            continue
        call = node.value  # type: ignore[attr-defined]
        if not _builds_scaler(call, imports):
            continue
        enabled = _enabled_argument(call)
        flag = dotted(enabled) if enabled is not None else None
        for target in node.targets:  # type: ignore[attr-defined]
            text = dotted(target.target)
            if flag is None or text is None:
                continue
            if flags.get(flag, text) != text:
                shared.add(flag)
            flags[flag] = text
    for copy, value in copies:  # a copy of the flag is the flag (`self.use_amp = use_amp`)
        if copy is not None and value in flags and copy not in flags:
            flags[copy] = flags[value]
    return {flag: text for flag, text in flags.items() if flag not in shared}


def _scaler_state(value: cst.BaseExpression, imports: ImportMap, falses: frozenset = frozenset()) -> Optional[str]:
    if isinstance(value, cst.IfExp):  # scaler = GradScaler() if args.amp else None
        states = [_scaler_state(v, imports, falses) for v in (value.body, value.orelse)]
        known = [s for s in states if s is not None]
        return None if not known else (SCALER_ON if SCALER_ON in known else SCALER_OFF)
    if not isinstance(value, cst.Call) or not _builds_scaler(value, imports):
        return None
    literal = _enabled_argument(value)
    if isinstance(literal, cst.Name) and (literal.value == "False" or literal.value in falses):
        return SCALER_OFF
    if isinstance(literal, cst.Integer) and literal.value == "0":
        return SCALER_OFF
    return SCALER_ON


def _builds_scaler(call: cst.Call, imports: ImportMap) -> bool:
    """Does the call construct a GradScaler (torch.amp, torch.cuda.amp, imported under any name)?"""
    return (imports.resolve(call.func) or "").endswith("GradScaler")


def _enabled_argument(call: cst.Call) -> Optional[cst.BaseExpression]:
    """The value of a GradScaler construction's `enabled=` keyword (the first one), if any."""
    return next((arg.value for arg in call.args if arg.keyword is not None and arg.keyword.value == "enabled"), None)


# ---------------------------------------------------------------------------------------------
# Reads of `.grad`
# ---------------------------------------------------------------------------------------------

_GRAD_ATTRS = frozenset({"grad", "main_grad"})
# Methods on a gradient that wipe it without reading it.
_WIPES = frozenset({"zero_", "detach_", "requires_grad_", "fill_", "mul_"})


def reads_grad(expr: cst.CSTNode) -> bool:
    """Does `expr` read the value of a `.grad` (`p.grad.norm()`, `hist(p.grad)`, `p.grad.sum()`)?

    Not reads: an assignment target (`p.grad = None`), `del p.grad`, a None test (`p.grad is not
    None`), a wipe (`p.grad.zero_()`, `p.grad.data.zero_()`), `torch.autograd.grad(...)` (a call).
    Nested defs and classes do not run here and are not entered.
    """
    parents: Dict[int, cst.CSTNode] = {}
    found: List[cst.Attribute] = []
    stack: List[cst.CSTNode] = [expr]
    while stack:
        node = stack.pop()
        if node is not expr and type(node) in (cst.FunctionDef, cst.ClassDef):
            continue
        for child in children(node):
            parents[id(child)] = node
            if type(child) is cst.Attribute and child.attr.value in _GRAD_ATTRS:
                found.append(child)
            stack.append(child)
    return any(_reading(node, parents) for node in found)


def _reading(node: cst.CSTNode, parents: Dict[int, cst.CSTNode]) -> bool:
    """Is `node` (a `.grad` attribute) read for its value?"""
    parent = parents.get(id(node))
    if type(parent) is cst.Attribute and parent.attr.value == "data" and parent.value is node:  # type: ignore
        node, parent = parent, parents.get(id(parent))  # p.grad.data: the same tensor
    if parent is None:
        return True
    kind = type(parent)
    if kind is cst.Call and parent.func is node:  # type: ignore[attr-defined]
        return False  # torch.autograd.grad(...), x.grad(...)
    if kind is cst.AssignTarget or kind is cst.Del:
        return False
    if kind is cst.AnnAssign and parent.target is node:  # type: ignore[attr-defined]
        return False
    if kind is cst.Comparison and parent.left is node:  # type: ignore[attr-defined]
        if all(
            isinstance(c.operator, (cst.Is, cst.IsNot))
            and isinstance(c.comparator, cst.Name)
            and c.comparator.value == "None"
            for c in parent.comparisons  # type: ignore[attr-defined]
        ):
            return False
    if kind is cst.Attribute and parent.value is node and parent.attr.value in _WIPES:  # type: ignore
        return False  # p.grad.zero_(), p.grad.detach_()
    return True


def reads_grad_statement(stmt: cst.BaseSmallStatement) -> bool:
    """A small statement reads a gradient: `.grad` read anywhere but as the thing assigned."""
    if isinstance(stmt, cst.Assign):
        return reads_grad(stmt.value) or any(_subscript_reads(t.target) for t in stmt.targets)
    if isinstance(stmt, (cst.AnnAssign,)):
        return stmt.value is not None and reads_grad(stmt.value)
    if isinstance(stmt, cst.AugAssign):
        return True if _is_grad(stmt.target) else reads_grad(stmt.value) or reads_grad(stmt.target)
    if isinstance(stmt, cst.Del):
        return False
    return reads_grad(stmt)


def _subscript_reads(target: cst.BaseExpression) -> bool:
    """`grads[name] = ...` reads nothing; `buf[p.grad.argmax()] = 1` does."""
    if isinstance(target, cst.Subscript):
        return any(reads_grad(el) for el in target.slice)
    return False


def _is_grad(expr: cst.BaseExpression) -> bool:
    if isinstance(expr, cst.Attribute) and expr.attr.value == "data":
        expr = expr.value
    return isinstance(expr, cst.Attribute) and expr.attr.value in _GRAD_ATTRS


# ---------------------------------------------------------------------------------------------
# Which clears are real clears
# ---------------------------------------------------------------------------------------------

_ZEROS = frozenset({"zeros_like", "zeros"})


def clearing_assignment(stmt: cst.CSTNode) -> bool:
    """`p.grad = None`, `p.grad = torch.zeros_like(p)`, `p.grad = 0 * p.grad`? (no: only None and
    zeros), `del p.grad`: statements that drop a gradient's value."""
    if isinstance(stmt, cst.Del):
        return _is_grad(stmt.target)
    if isinstance(stmt, cst.Assign):
        targets: List[cst.BaseExpression] = [t.target for t in stmt.targets]
        value = stmt.value
    elif isinstance(stmt, cst.AnnAssign) and stmt.value is not None:
        targets, value = [stmt.target], stmt.value
    else:
        return False
    if not any(_is_grad(t) for t in targets):
        return False
    if isinstance(value, cst.Name) and value.value == "None":
        return True
    if isinstance(value, cst.Call):
        text = dotted(value.func) or ""
        return text.rsplit(".", 1)[-1] in _ZEROS
    return False


def wiping_call(call: cst.Call) -> bool:
    """`opt.zero_grad()`, `model.zero_grad(set_to_none=True)`, `p.grad.zero_()`, `p.grad.detach_()`."""
    func = call.func
    if not isinstance(func, cst.Attribute):
        return False
    if func.attr.value == "zero_grad":
        return True
    return func.attr.value in ("zero_", "detach_") and _is_grad(func.value)

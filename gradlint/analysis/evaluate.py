"""Abstract evaluation of one expression to a `Shape` (or criterion, container, module object).

`Evaluator.value(expr, env)` knows torch: factories, reductions, elementwise arithmetic and
broadcasting, losses and their `reduction=`, reshapes, `gather`, subscripts; and it knows where
batches come from: a loader's batch is "data", a model called on it gives an "output", and such an
output used as a prediction (compared with the batch or with another output, indexed `[:, i]`,
reduced along a dimension, gathered along dim 1) is "batched". Concatenation (`torch.cat`) and row
slices (`x[:n]`, `x[n:]`) keep a batch a batch and a per-sample tensor per sample, and a lower
bound on the number of dimensions (`x[:, :-1, :]` has 3) tells `(per_token * mask).sum(-1)` from
a full reduction. Calls of the project's own functions, classes and methods, and of functions
nested in the one being read, are left to `project_call`/`instance_call`/`helper_call`, which
`analysis.summaries` fills in; here they know nothing.
"""

from __future__ import annotations

import builtins
import math
from dataclasses import replace
from typing import Any, Dict, List, Optional, Tuple

import libcst as cst

from gradlint.analysis.batch_sources import builtin_batch, prepared, prepared_items
from gradlint.analysis.libraries import Preparer, library_class, preparer
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.shapes import (
    DATA,
    NUMBER,
    OUTPUT,
    UNKNOWN,
    Const,
    Flag,
    Helper,
    Instance,
    LossFn,
    Seq,
    Shape,
    Struct,
    Value,
    GATHER_WHY,
    broadcast,
    elements,
    from_dims,
    int_literal,
    is_per_gpu,
    merge,
    per_gpu,
    string_literal,
)
from gradlint.analysis.torchcalls import CallArgs, TorchCalls, split_args

Env = Dict[str, Value]
BUILTINS = frozenset(dir(builtins))
# Attributes of a batch that are not per-sample tensors.
_META = frozenset("shape dtype device ndim is_cuda requires_grad grad_fn names layout".split())
# Methods of a batch that return sizes or Python values, not per-sample tensors.
_META_METHODS = frozenset("size numel nelement dim ndimension item tolist stride get_device data_ptr keys".split())
# Fields of a model's output record that hold per-sample predictions (a `.loss` field is 0-dim).
_PREDICTION_FIELDS = frozenset(
    "logits last_hidden_state pooler_output prediction_logits start_logits end_logits".split()
)
# Methods of a module object that return the module itself.
_SELF_RETURNING = frozenset("to cuda cpu float half double bfloat16 train eval requires_grad_ share_memory".split())
_SAMPLE_KINDS = ("output", "batched", "data")


class Evaluator(TorchCalls):
    """Abstract evaluation of expressions under an environment of names."""

    def __init__(self, module: cst.Module, imports: ImportMap) -> None:
        self.module = module
        self.imports = imports

    # -- hooks for the project's own code (see analysis.summaries) ---------------------------
    def project_call(self, call: cst.Call, args: CallArgs, env: Env) -> Optional[Value]:
        """Value of a call of the project's own function, class or method; None: not one."""
        return None

    def instance_call(self, inst: Instance, call: cst.Call, args: CallArgs, env: Env) -> Optional[Value]:
        """What calling a project module object returns; None: not known."""
        return None

    def helper_call(self, helper: Helper, call: cst.Call, args: CallArgs, env: Env) -> Optional[Value]:
        """What a call of a function defined in the scope being read returns; None: not known."""
        return None

    # -- entry ---------------------------------------------------------------------------
    def value(self, expr: cst.BaseExpression, env: Env) -> Value:
        """What `expr` is under `env`. Within one outermost evaluation each sub-expression is
        evaluated once (a call looks at its receiver both as the callee's base and as the
        receiver: without the memo `x.sum().sum()...` costs 2**n)."""
        memo: Optional[Dict[Tuple[int, int], Tuple[Any, Any, Value]]] = getattr(self, "_memo", None)
        outermost = memo is None
        if memo is None:
            memo = {}
            self._memo: Optional[Dict[Tuple[int, int], Tuple[Any, Any, Value]]] = memo
        key = (id(expr), id(env))
        try:
            if key not in memo:
                # keep expr and env alive with the answer, so their ids are not reused meanwhile
                memo[key] = (expr, env, self._value(expr, env))
            return memo[key][2]
        except RecursionError:  # absurdly deep expressions: know nothing
            return UNKNOWN
        finally:
            if outermost:
                self._memo = None

    def shape(self, expr: cst.BaseExpression, env: Env) -> Shape:
        value = self.value(expr, env)
        return value if isinstance(value, Shape) else UNKNOWN

    def _value(self, expr: cst.BaseExpression, env: Env) -> Value:
        if isinstance(expr, (cst.Integer, cst.Float)):
            return NUMBER
        if isinstance(expr, cst.Name):
            if expr.value in ("True", "False") and expr.value not in env:
                return Flag(expr.value == "True")
            return env.get(expr.value, UNKNOWN)
        if isinstance(expr, cst.Attribute):
            return self._attribute(expr, env)
        if isinstance(expr, cst.UnaryOperation):
            if isinstance(expr.operator, cst.Not):
                return UNKNOWN
            return self.shape(expr.expression, env)
        if isinstance(expr, cst.BinaryOperation):
            left, right = self.shape(expr.left, env), self.shape(expr.right, env)
            if isinstance(expr.operator, cst.MatrixMultiply):
                return self._matmul(left, right)
            combined = self.elementwise([left, right], _operator(expr.operator), expr)
            if combined.kind in ("output", "unknown") and isinstance(expr.operator, (cst.Add, cst.Subtract)):
                return self._signed_comparison(expr, env) or combined
            return combined
        if isinstance(expr, cst.IfExp):
            return merge(self.value(expr.body, env), self.value(expr.orelse, env))
        if isinstance(expr, cst.Call):
            return self._call(expr, env)
        if isinstance(expr, cst.Subscript):
            return self._subscript(expr, env)
        if isinstance(expr, (cst.Tuple, cst.List)):
            items = elements(expr)
            return Seq(tuple(self.value(e, env) for e in items)) if items is not None else UNKNOWN
        if isinstance(expr, cst.Dict):
            return self._dict(expr, env)
        text = string_literal(expr) if isinstance(expr, cst.SimpleString) else None
        return Const(text) if text is not None else UNKNOWN

    def _dict(self, expr: cst.Dict, env: Env) -> Value:
        fields = []
        for element in expr.elements:
            key = string_literal(element.key) if isinstance(element, cst.DictElement) else None
            if key is None:
                return UNKNOWN
            fields.append((key, self.value(element.value, env)))
        return Struct(tuple(fields))

    def _attribute(self, expr: cst.Attribute, env: Env) -> Value:
        key = dotted(expr)
        if key is not None and key in env:
            return env[key]
        attr = expr.attr.value
        if attr in ("T", "mT", "data", "real"):
            base = self.shape(expr.value, env)
            if attr in ("T", "mT") and base.dims is not None:
                dims = tuple(reversed(base.dims)) if attr == "T" else base.dims[:-2] + base.dims[-2:][::-1]
                return Shape(base.kind, dims=dims, rank=base.rank, why=base.why)
            return base
        if key is not None and key.split(".")[0] in self.imports.aliases:
            return UNKNOWN  # an attribute of an imported module
        base_value = self.value(expr.value, env)
        if is_per_gpu(base_value) and attr not in _META:
            return base_value  # `out.loss` of a gathered output record
        if isinstance(base_value, Struct):
            return base_value.get(attr) or UNKNOWN
        if isinstance(base_value, Seq) and attr == "values" and base_value.items:
            return base_value.items[0]
        if isinstance(base_value, Instance) and attr == "module":
            return base_value.unwrapped()
        if isinstance(base_value, Shape):
            if base_value.kind == "data" and attr not in _META:
                return DATA  # `batch.x`
            if base_value.kind == "output" and attr in _PREDICTION_FIELDS:
                return OUTPUT  # `outputs.logits`
        return UNKNOWN

    def _subscript(self, expr: cst.Subscript, env: Env) -> Value:
        base = self.value(expr.value, env)
        items = expr.slice
        if len(items) == 1 and isinstance(items[0].slice, cst.Index):
            index = items[0].slice.value
            if isinstance(base, Struct):
                key = string_literal(index)
                return (base.get(key) or UNKNOWN) if key is not None else UNKNOWN
            if isinstance(base, Seq):
                number = int_literal(index)
                if number is not None and -len(base.items) <= number < len(base.items):
                    return base.items[number]
                return UNKNOWN
        if not isinstance(base, Shape):
            return UNKNOWN
        if is_per_gpu(base) and len(items) == 1 and isinstance(items[0].slice, cst.Index):
            # `out["loss"]` of a gathered dict; `out[0]` may be a row of a tensor: unknown
            return base if string_literal(items[0].slice.value) is not None else UNKNOWN
        if base.kind == "output" and len(items) == 1 and isinstance(items[0].slice, cst.Index):
            key = string_literal(items[0].slice.value)
            if key is None or key in _PREDICTION_FIELDS:
                return OUTPUT  # `scores[i]` of a multi-head model, `outputs["logits"]`
            return UNKNOWN
        if base.kind == "data":
            return DATA  # `batch["x"]`, `batch[0]`, `x[:, :-1]`
        if base.kind in ("output", "batched") and _keeps_dim0(items):
            least = _indexed_rank(items, base.least_rank)
            if base.kind == "batched":
                if not all(isinstance(item.slice, cst.Slice) for item in items):
                    base = replace(base, like_output=False)  # `x[:, 0]` drops a dimension
                return replace(base, rank=None, min_rank=least) if least != base.least_rank else base
            if all(isinstance(item.slice, cst.Slice) for item in items):
                why = f"`{self.code(expr)}` slices a model's output for a batch, keeping one row per sample"
            else:
                why = f"`{self.code(expr)}` takes a column of a model's output for a batch"
            return Shape("batched", why=why, min_rank=least)
        if base.kind in ("output", "batched") and _row_slice(items):
            # `x[:n]`, `x[n:]`: some of the rows (samples) of a per-sample tensor, still one per sample
            if len(items) == 1:
                return base
            least = _indexed_rank(items, base.least_rank)
            if base.kind == "batched":
                return replace(base, rank=None, min_rank=least, like_output=False)
            return Shape("batched", why=f"`{self.code(expr)}` takes a column of a model's output for a batch",
                         min_rank=least)
        return UNKNOWN

    # -- combining shapes --------------------------------------------------------------------
    def elementwise(self, shapes: List[Shape], op: str = "", node: Optional[cst.CSTNode] = None) -> Shape:
        """Broadcasting never shrinks a non-scalar; scalars combine into a scalar. A model's output
        for a batch combined with the batch, or subtracted from another output, is per sample."""
        ranks = [s.rank for s in shapes]
        rank = max(ranks) if ranks and all(r is not None for r in ranks) else None  # type: ignore[type-var]
        dims = None
        if shapes and all(s.dims is not None for s in shapes):
            dims = broadcast([s.dims for s in shapes])  # type: ignore[misc]
        like_output = any(s.like_output for s in shapes if s.kind != "output")
        for s in shapes:
            if s.kind == "nonscalar":
                if dims is not None and math.prod(dims) > 1:
                    return Shape("nonscalar", dims=dims, rank=len(dims), why=s.why)
                return Shape("nonscalar", rank=rank, why=s.why, like_output=like_output)
        for kind in ("batched", "gathered"):
            for s in shapes:
                if s.kind == kind:
                    least = max(other.least_rank for other in shapes) if rank is None else 0
                    return Shape(kind, rank=rank, why=s.why, min_rank=least,
                                 like_output=like_output and kind == "batched")
        if shapes and all(s.is_scalar for s in shapes):
            return Shape("scalar", dims=dims, rank=rank)
        kinds = [s.kind for s in shapes]
        outputs, datas = kinds.count("output"), kinds.count("data")
        text = f"`{self.code(node)}`" if node is not None else "it"
        if outputs and datas:
            why = f"{text} combines a model's output for a batch with the batch, element by element"
            like_output = any(s.like_output for s in shapes if s.kind == "output")
            return Shape("batched", why=why, like_output=like_output)
        if outputs >= 2 and op == "sub":
            # scores compared with scores (`worse - better`) are often one per sample already: a
            # reduction over their last dimension may leave a scalar
            return Shape("batched", why=f"{text} compares model outputs for a batch element by element")
        others = [k for k in kinds if k not in ("output", "data", "scalar")]
        if outputs and (not others or op == "scale"):
            return OUTPUT
        if datas and not others:
            return DATA
        return Shape("unknown", dims=dims, rank=rank)

    @staticmethod
    def _matmul(a: Shape, b: Shape) -> Shape:
        if a.dims is not None and b.dims is not None and a.dims and b.dims:
            left = a.dims if len(a.dims) > 1 else (1,) + a.dims
            right = b.dims if len(b.dims) > 1 else b.dims + (1,)
            batch = broadcast([left[:-2], right[:-2]])
            if batch is None:
                return UNKNOWN
            dims = batch + (left[-2], right[-1])
            if len(a.dims) == 1:
                dims = dims[:-2] + dims[-1:]
            if len(b.dims) == 1:
                dims = dims[:-1]
            return from_dims(dims, "it is a matrix product of shape " + str(tuple(dims)))
        if a.rank == 1 and b.rank == 1:
            return Shape("scalar", rank=0)
        if a.rank is not None and b.rank is not None and a.rank >= 1 and b.rank >= 1:
            rank = max(a.rank, b.rank) - (1 if min(a.rank, b.rank) == 1 else 0)
            return Shape("unknown", rank=rank)
        return UNKNOWN

    # -- calls ---------------------------------------------------------------------------
    def _call(self, call: cst.Call, env: Env) -> Value:
        func = call.func
        qualified = self.imports.resolve(func)
        args = split_args(call)
        if qualified is not None and "." in qualified and self._names_module(func):
            wrapped = self._wrapper(qualified, args, env)
            if wrapped is not None:
                return wrapped
        library = library_class(qualified)
        if library is not None:
            return Instance(None, False, library)  # `ml.Accelerator()`: a preparer of modules
        if qualified is not None and "." in qualified:
            result = self.qualified_call(qualified, call, args, env)
            if result is not None:
                return result
        shadowed = "sum" in env or "sum" in self.imports.aliases
        if isinstance(func, cst.Name) and func.value == "sum" and not shadowed:
            total = self._builtin_sum(args, env)
            if total is not None:
                return total
        batch = builtin_batch(call, env, self) or prepared(call, env, self)  # `next(iter(loader))`
        if batch is not None:
            return batch
        project = self.project_call(call, args, env)
        if project is not None:
            return project
        callee = self.value(func, env) if isinstance(func, (cst.Name, cst.Attribute)) else UNKNOWN
        if isinstance(callee, Helper):
            result = self.helper_call(callee, call, args, env)
            if result is not None:
                return result
            return self._opaque(func, args, env)
        if isinstance(callee, LossFn):
            if callee.reduces is False:
                like_output = callee.elementwise and len(args.positional) >= 2 and self.elementwise(
                    [self.shape(a, env) for a in args.positional[:2]]).like_output
                return Shape("nonscalar", why=f"`{callee.origin}` returns one loss per element",
                             like_output=like_output)
            if callee.gathered:  # `nn.DataParallel(criterion)`: one loss per replica comes back
                if callee.reduces is True:
                    return Shape("gathered", rank=1, why=GATHER_WHY.format(name=self.code(func)))
                return per_gpu(self.code(func))
            if callee.reduces is True:
                return Shape("scalar", rank=0)
            return UNKNOWN
        if isinstance(callee, Instance):
            if callee.cls is not None or callee.gathered:
                result = self.instance_call(callee, call, args, env)
                if result is not None:
                    return result
            if callee.gathered:
                return per_gpu(self.code(func))
            return OUTPUT if self._feeds_batch(args, env) else UNKNOWN
        if isinstance(func, cst.Attribute) and not self._names_module(func.value):
            receiver = self.value(func.value, env)
            if isinstance(receiver, Instance) and receiver.library:
                fact = preparer(receiver.library, func.attr.value)
                if fact is not None:
                    return self._prepared(fact, args, env)
            if isinstance(receiver, (Instance, LossFn, Seq)) and func.attr.value in _SELF_RETURNING:
                return receiver
            if func.attr.value in self.TENSOR_METHODS:
                return self.method(func.attr.value, func.value, call, args, env)
        if args.keywords and not args.positional and not args.starred and _record_like(func):
            return Struct(tuple((k, self.value(v, env)) for k, v in args.keywords.items()))
        return self._opaque(func, args, env)

    def _builtin_sum(self, args: CallArgs, env: Env) -> Optional[Value]:
        """`sum([a, b])`, `sum(losses)` of a known tuple or list, `sum(record.values())` of a
        known dict: the items added together (a per-sample item keeps the total per sample)."""
        if len(args.positional) != 1 or args.starred:
            return None
        arg = args.positional[0]
        value: Value = UNKNOWN
        if isinstance(arg, cst.Call) and isinstance(arg.func, cst.Attribute) and arg.func.attr.value == "values":
            record = self.value(arg.func.value, env) if not arg.args else UNKNOWN
            value = Seq(tuple(v for _, v in record.fields)) if isinstance(record, Struct) else UNKNOWN
        else:
            value = self.value(arg, env)
        if not isinstance(value, Seq) or not value.items:
            return None
        shapes = [item if isinstance(item, Shape) else UNKNOWN for item in value.items]
        return self.elementwise(shapes, "add")

    def _opaque(self, func: cst.BaseExpression, args: CallArgs, env: Env) -> Value:
        """A call of something unknown (`scorer(a)`, `self.body(x)`, `engine(batch)`): fed a
        batch, what it returns is a model's output for that batch."""
        text = dotted(func)
        if text is None:
            return UNKNOWN
        head = text.split(".")[0]
        if head in self.imports.aliases or (head == text and head in BUILTINS):
            return UNKNOWN
        if isinstance(func, cst.Attribute):
            receiver = self.value(func.value, env)
            if isinstance(receiver, Shape) and receiver.kind in ("data", "output", "batched"):
                # a method of a batch or of an output (`x.index_select(0, i)`): not a model
                tensor = receiver.kind == "data" and func.attr.value not in _META_METHODS
                return DATA if tensor else UNKNOWN
        return OUTPUT if self._feeds_batch(args, env) else UNKNOWN

    def _feeds_batch(self, args: CallArgs, env: Env) -> bool:
        exprs = args.positional + list(args.keywords.values()) + args.star_values
        return any(self.shape(e, env).kind in ("data", "output") for e in exprs)

    def _wrapper(self, qualified: str, args: CallArgs, env: Env) -> Optional[Value]:
        """`nn.DataParallel(net)` gathers; DDP, FSDP and `torch.compile` hand the module through."""
        last = qualified.rsplit(".", 1)[-1]
        inner: Value = self.value(args.positional[0], env) if args.positional else UNKNOWN
        if last.endswith("DataParallel"):
            if "Distributed" in last or "Sharded" in last:
                return inner if isinstance(inner, Instance) else Instance(None, False, last)
            devices = args.keywords.get("device_ids", args.positional[1] if len(args.positional) > 1 else None)
            listed = elements(devices) if devices is not None else None
            gathers = listed is None or len(listed) > 1  # `device_ids=[0]`: one replica, nothing gathered
            if isinstance(inner, Instance):
                return Instance(inner.cls, gathers, inner.library)
            if isinstance(inner, LossFn):  # `nn.DataParallel(nn.NLLLoss())`: a criterion per replica
                return replace(inner, gathered=gathers)
            return Instance(None, gathers, last)
        if qualified in ("torch.compile",) and isinstance(inner, Instance):
            return inner
        return None

    def _prepared(self, fact: Preparer, args: CallArgs, env: Env) -> Value:
        """What a library preparer returns (see `analysis.libraries`): the module wrapped in
        `DataParallel`, or what it was handed, passed through."""
        values = [self.value(e, env) for e in args.positional]
        if args.starred or not values:
            return UNKNOWN
        if not fact.gathers:
            values = prepared_items(args.positional, values, env, self)  # loaders stay loaders
            return values[0] if len(values) == 1 else Seq(tuple(values))
        inner = values[0]
        if isinstance(inner, Instance):
            return Instance(inner.cls, True, inner.library)
        if isinstance(inner, LossFn):
            return replace(inner, gathered=True)
        return Instance(None, True, "DataParallel")

    def _signed_comparison(self, expr: cst.BinaryOperation, env) -> Optional[Shape]:
        """`margin - preferred + other`, `-a + b + c`: a sum in which model outputs for a batch
        appear with both signs compares them element by element, like `other - preferred`."""
        signs = set()
        todo: List[Tuple[cst.BaseExpression, int]] = [(expr, 1)]
        while todo:
            part, sign = todo.pop()
            if isinstance(part, cst.BinaryOperation) and isinstance(part.operator, (cst.Add, cst.Subtract)):
                todo.append((part.left, sign))
                todo.append((part.right, -sign if isinstance(part.operator, cst.Subtract) else sign))
            elif isinstance(part, cst.UnaryOperation) and isinstance(part.operator, (cst.Minus, cst.Plus)):
                todo.append((part.expression, -sign if isinstance(part.operator, cst.Minus) else sign))
            elif self.shape(part, env).kind == "output":
                signs.add(sign)
        if len(signs) == 2:
            return Shape("batched", why=f"`{self.code(expr)}` compares model outputs for a batch element by element")
        return None

    def _names_module(self, expr: cst.BaseExpression) -> bool:
        """Is `expr` an imported module (torch, F, nn...) rather than a tensor?"""
        if not isinstance(expr, (cst.Name, cst.Attribute)):
            return False
        name = dotted(expr)
        head = name.split(".")[0] if name else ""
        return head in self.imports.aliases


def _operator(op: cst.BaseBinaryOp) -> str:
    if isinstance(op, cst.Subtract):
        return "sub"
    if isinstance(op, (cst.Multiply, cst.Divide, cst.FloorDivide)):
        return "scale"
    return "add" if isinstance(op, cst.Add) else "other"


def _keeps_dim0(items) -> bool:
    """`x[:, i]`, `x[:, :, 0]`: the first index is a full slice and more indices follow."""
    if len(items) < 2:
        return False
    first = items[0].slice
    return isinstance(first, cst.Slice) and first.lower is None and first.upper is None and first.step is None


def _row_slice(items) -> bool:
    """`x[:n]`, `x[n:]`, `x[a:b]`, `x[:n, 0]`: the first index takes some of the rows (samples) and
    the code does not show that one row at most is left (`x[:1]`, `x[-1:]`, `x[3:4]`), nor a
    step that may leave one (`x[::2]`)."""
    first = items[0].slice if items else None
    if not isinstance(first, cst.Slice) or first.step is not None:
        return False
    lower = int_literal(first.lower) if first.lower is not None else 0  # None: not a literal
    upper = int_literal(first.upper) if first.upper is not None else None
    if first.upper is None:
        return lower != -1  # `x[n:]`, `x[1:]`; not `x[-1:]`, the last row
    if upper is None:
        return True  # `x[:n]`, `x[a:b]`
    if lower is None:
        return upper > 1 or upper < 0  # `x[n:-1]`; not `x[n:1]`
    if (lower >= 0) == (upper >= 0):
        return upper - lower > 1  # `x[0:4]`, `x[-4:-1]`; not `x[:1]`, `x[3:4]`, `x[-2:-1]`
    return lower >= 0  # `x[:-1]`, `x[1:-1]`; `x[-3:2]` depends on the size


def _indexed_rank(items, least: int) -> int:
    """Dimensions `x[items]` has at least, for `x` with at least `least`: each index names a
    dimension of `x`, an integer removes it, `None` adds one. An index that is not a literal or a
    slice (maybe a mask spanning several dimensions) leaves nothing known."""
    named = removed = added = 0
    for item in items:
        index = item.slice
        if isinstance(index, cst.Slice):
            named += 1
        elif isinstance(index.value, cst.Name) and index.value.value == "None":
            added += 1
        elif int_literal(index.value) is not None:
            named += 1
            removed += 1
        else:
            return 0
    return max(least, named) - removed + added


def _record_like(func: cst.BaseExpression) -> bool:
    """`Output(loss=..., logits=...)`, `dict(loss=...)`: a record of named fields."""
    text = dotted(func)
    if text is None:
        return False
    last = text.rsplit(".", 1)[-1]
    return last == "dict" or last[:1].isupper()

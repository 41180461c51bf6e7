"""Is the tensor a backward call starts from a scalar? (The fact GL003 reads.)

`loss.backward()` with no `gradient=` only works when `loss` has one element. This module infers,
without running anything, whether the root of each backward call is

- **scalar**: `.sum()`/`.mean()`/`.norm()`/`.max()` without `dim`, losses with their default
  reduction, arithmetic of scalars (`.sum() * 0.5`), factories of one element;
- **non-scalar**: losses with `reduction='none'` / `reduce=False` (functional, or criteria built that
  way: `crit = nn.MSELoss(reduction='none')`, also as `self.crit` set in `__init__`), `dim=`
  reductions of tensors of known rank >= 2, factories of more than one element (`torch.ones(3)`,
  `torch.eye(4)`), `torch.stack` of several tensors, and elementwise results of any non-scalar
  (`a * b.mean()` is still a vector: `.mean()` binds tighter than `*`);
- **unknown**: everything else (`model(x)`, parameters of the function, names reassigned in a
  branch). Unknown means the rule stays silent.

Values flow by straight-line reaching definitions inside each function: a name assigned differently
in the two arms of an `if` is unknown afterwards; a name assigned inside a loop is unknown when the
loop starts. Module-level names assigned once are visible inside functions, and `self.<attr>`
assigned once in a class is visible in all its methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple, Union

import libcst as cst

from gradlint.analysis.backward import BackwardCall, backward_call, unknown_arguments
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.reads import param_names
from gradlint.analysis.tree import COMPREHENSIONS, SCOPES, walk

# --------------------------------------------------------------------------------------------
# The abstract values


@dataclass(frozen=True)
class Shape:
    """What is known about a tensor's size: kind is "scalar", "nonscalar" or "unknown"."""

    kind: str
    dims: Optional[Tuple[int, ...]] = None  # exact sizes, when every one is a literal
    rank: Optional[int] = None  # exact number of dimensions, when known
    why: str = ""  # for a non-scalar: where its extra elements come from (for messages)

    @property
    def is_scalar(self) -> bool:
        return self.kind == "scalar"

    @property
    def is_nonscalar(self) -> bool:
        return self.kind == "nonscalar"


@dataclass(frozen=True)
class LossFn:
    """A criterion object such as `nn.MSELoss(reduction='none')`; reduces: None when unknown."""

    reduces: Optional[bool]
    origin: str


Value = Union[Shape, LossFn]
UNKNOWN = Shape("unknown")
NUMBER = Shape("scalar", dims=(), rank=0)


def _from_dims(dims: Tuple[int, ...], why: str) -> Shape:
    numel = math.prod(dims)
    if numel == 1:
        return Shape("scalar", dims=dims, rank=len(dims))
    if numel == 0:
        return Shape("unknown", dims=dims, rank=len(dims))
    return Shape("nonscalar", dims=dims, rank=len(dims), why=why)


def _merge(a: Optional[Value], b: Optional[Value]) -> Value:
    """The value of a name that may come from either of two definitions."""
    if a is None or b is None:
        return UNKNOWN
    return a if a == b else UNKNOWN


# --------------------------------------------------------------------------------------------
# Vocabulary

# nn.<X>Loss classes and their functional forms; all take `reduction=` (and the deprecated `reduce=`).
LOSS_CLASSES = frozenset(
    "L1Loss MSELoss CrossEntropyLoss NLLLoss BCELoss BCEWithLogitsLoss SmoothL1Loss HuberLoss KLDivLoss "
    "PoissonNLLLoss GaussianNLLLoss HingeEmbeddingLoss MarginRankingLoss SoftMarginLoss "
    "MultiLabelSoftMarginLoss MultiLabelMarginLoss MultiMarginLoss CosineEmbeddingLoss TripletMarginLoss "
    "TripletMarginWithDistanceLoss CTCLoss".split()
)
LOSS_FUNCTIONS = frozenset(
    "l1_loss mse_loss cross_entropy nll_loss binary_cross_entropy binary_cross_entropy_with_logits "
    "smooth_l1_loss huber_loss kl_div poisson_nll_loss gaussian_nll_loss hinge_embedding_loss "
    "margin_ranking_loss soft_margin_loss multilabel_soft_margin_loss multilabel_margin_loss "
    "multi_margin_loss cosine_embedding_loss triplet_margin_loss triplet_margin_with_distance_loss "
    "ctc_loss".split()
)
# Losses whose unreduced output has the broadcast shape of their two inputs.
ELEMENTWISE_LOSSES = frozenset(
    "l1_loss mse_loss smooth_l1_loss huber_loss binary_cross_entropy binary_cross_entropy_with_logits "
    "kl_div poisson_nll_loss".split()
)

# Reductions: without a dim they give one element.
REDUCTIONS = frozenset(
    "sum mean prod norm max min amax amin logsumexp std var median nansum nanmean nanmedian "
    "count_nonzero all any".split()
)
# Reductions whose first positional argument (after the input) is not a dim.
_NORM_LIKE = {"norm": 1}  # x.norm(p, dim)
_DIM_REQUIRED = frozenset({"logsumexp"})

ELEMENTWISE_METHODS = frozenset(
    "exp log log1p log2 log10 expm1 abs neg negative sqrt rsqrt square pow sigmoid tanh relu clamp clamp_min "
    "clamp_max clip sin cos reciprocal float double half bfloat16 to cuda cpu contiguous clone mul add sub "
    "div true_divide multiply subtract divide mul_ add_ sub_ div_ pow_ exp_ clamp_ softmax log_softmax "
    "masked_fill type_as requires_grad_ nan_to_num lerp addcmul addcdiv where".split()
)
# Methods that keep the number of elements but may change the rank.
NUMEL_PRESERVING = frozenset("view reshape flatten view_as reshape_as squeeze unsqueeze t transpose permute".split())

ELEMENTWISE_TORCH = frozenset(
    "exp log log1p log2 log10 expm1 abs neg negative sqrt rsqrt square pow sigmoid tanh relu clamp clip sin "
    "cos reciprocal mul add sub div true_divide multiply subtract divide maximum minimum nan_to_num "
    "softmax log_softmax lerp addcmul addcdiv where".split()
)
ELEMENTWISE_FUNCTIONAL = frozenset(
    "relu relu6 gelu silu mish elu selu celu leaky_relu softplus sigmoid tanh hardtanh hardswish "
    "hardsigmoid logsigmoid softsign dropout softmax log_softmax normalize".split()
)

_FACTORIES = frozenset("zeros ones empty rand randn".split())
_LIKE = frozenset("zeros_like ones_like empty_like rand_like randn_like full_like randint_like".split())

TORCH = "torch."
FUNCTIONAL = "torch.nn.functional."


# --------------------------------------------------------------------------------------------
# Reading literal arguments


def _int(expr: cst.BaseExpression) -> Optional[int]:
    """An integer literal (also `-1`), else None."""
    if isinstance(expr, cst.Integer):
        try:
            return int(expr.value.replace("_", ""), 0)
        except ValueError:
            return None
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        inner = _int(expr.expression)
        return -inner if inner is not None else None
    return None


def _number(expr: cst.BaseExpression) -> Optional[float]:
    value = _int(expr)
    if value is not None:
        return float(value)
    if isinstance(expr, cst.Float):
        try:
            return float(expr.value.replace("_", ""))
        except ValueError:
            return None
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        inner = _number(expr.expression)
        return -inner if inner is not None else None
    return None


def _string(expr: Optional[cst.BaseExpression]) -> Optional[str]:
    if isinstance(expr, cst.SimpleString):
        try:
            value = expr.evaluated_value
        except Exception:  # odd prefixes: not a plain literal
            return None
        return value if isinstance(value, str) else None
    return None


def _bool(expr: Optional[cst.BaseExpression]) -> Optional[bool]:
    if isinstance(expr, cst.Name) and expr.value in ("True", "False"):
        return expr.value == "True"
    return None


def _elements(expr: cst.BaseExpression) -> Optional[List[cst.BaseExpression]]:
    """Elements of a literal tuple/list without starred items, else None."""
    if isinstance(expr, (cst.Tuple, cst.List)):
        if any(isinstance(el, cst.StarredElement) for el in expr.elements):
            return None
        return [el.value for el in expr.elements]
    return None


@dataclass
class _CallArgs:
    positional: List[cst.BaseExpression]
    keywords: Dict[str, cst.BaseExpression]
    starred: bool


def _split(call: cst.Call) -> _CallArgs:
    positional: List[cst.BaseExpression] = []
    keywords: Dict[str, cst.BaseExpression] = {}
    starred = False
    for arg in call.args:
        if arg.star:
            starred = True
        elif arg.keyword is not None:
            keywords[arg.keyword.value] = arg.value
        else:
            positional.append(arg.value)
    return _CallArgs(positional, keywords, starred)


def _sizes(exprs: List[cst.BaseExpression]) -> Tuple[Optional[Tuple[int, ...]], Optional[int]]:
    """Sizes given as `3, 4` or `(3, 4)`: (exact dims or None, rank or None)."""
    if len(exprs) == 1:
        inner = _elements(exprs[0])
        if inner is not None:
            exprs = inner
        elif _int(exprs[0]) is None:
            return None, None  # a single variable: a size object or an int, rank unknown
    values = [_int(e) for e in exprs]
    if all(v is not None and v >= 0 for v in values):
        return tuple(values), len(values)  # type: ignore[arg-type]
    return None, len(exprs)


def _nested_dims(expr: cst.BaseExpression) -> Optional[Tuple[int, ...]]:
    """Shape of a nested list literal of numbers: `[[1., 2.], [3., 4.]]` -> (2, 2)."""
    if _number(expr) is not None:
        return ()
    elements = _elements(expr)
    if elements is None or not elements:
        return None
    inner = [_nested_dims(e) for e in elements]
    if any(d is None for d in inner) or len(set(inner)) != 1:
        return None
    return (len(elements),) + inner[0]  # type: ignore[operator]


def _short(code: str, limit: int = 60) -> str:
    code = " ".join(code.split())
    return code if len(code) <= limit else code[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# Evaluating expressions


class Evaluator:
    """Abstract evaluation of expressions to `Shape`/`LossFn` under an environment of names."""

    def __init__(self, module: cst.Module, imports: ImportMap) -> None:
        self.module = module
        self.imports = imports

    def code(self, node: cst.CSTNode) -> str:
        return _short(self.module.code_for_node(node))

    # -- entry ---------------------------------------------------------------------------
    def value(self, expr: cst.BaseExpression, env: Dict[str, Value]) -> Value:
        try:
            return self._value(expr, env)
        except RecursionError:  # absurdly deep expressions: know nothing
            return UNKNOWN

    def shape(self, expr: cst.BaseExpression, env: Dict[str, Value]) -> Shape:
        value = self.value(expr, env)
        return value if isinstance(value, Shape) else UNKNOWN

    def _value(self, expr: cst.BaseExpression, env: Dict[str, Value]) -> Value:
        if isinstance(expr, (cst.Integer, cst.Float)):
            return NUMBER
        if isinstance(expr, cst.Name):
            return env.get(expr.value, UNKNOWN)
        if isinstance(expr, cst.Attribute):
            return self._attribute(expr, env)
        if isinstance(expr, cst.UnaryOperation):
            if isinstance(expr.operator, cst.Not):
                return UNKNOWN
            return self.shape(expr.expression, env)
        if isinstance(expr, cst.BinaryOperation):
            if isinstance(expr.operator, cst.MatrixMultiply):
                return self._matmul(self.shape(expr.left, env), self.shape(expr.right, env))
            return self._elementwise([self.shape(expr.left, env), self.shape(expr.right, env)])
        if isinstance(expr, cst.IfExp):
            return _merge(self.value(expr.body, env), self.value(expr.orelse, env))
        if isinstance(expr, cst.Call):
            return self._call(expr, env)
        return UNKNOWN

    def _attribute(self, expr: cst.Attribute, env: Dict[str, Value]) -> Value:
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
        return UNKNOWN

    # -- combining shapes --------------------------------------------------------------------
    @staticmethod
    def _elementwise(shapes: List[Shape]) -> Shape:
        """Broadcasting never shrinks a non-scalar; scalars combine into a scalar."""
        ranks = [s.rank for s in shapes]
        rank = max(ranks) if ranks and all(r is not None for r in ranks) else None  # type: ignore[type-var]
        dims = None
        if shapes and all(s.dims is not None for s in shapes):
            dims = _broadcast([s.dims for s in shapes])  # type: ignore[misc]
        for s in shapes:
            if s.is_nonscalar:
                if dims is not None and math.prod(dims) > 1:
                    return Shape("nonscalar", dims=dims, rank=len(dims), why=s.why)
                return Shape("nonscalar", rank=rank, why=s.why)
        if shapes and all(s.is_scalar for s in shapes):
            return Shape("scalar", dims=dims, rank=rank)
        return Shape("unknown", dims=dims, rank=rank)

    @staticmethod
    def _matmul(a: Shape, b: Shape) -> Shape:
        if a.dims is not None and b.dims is not None and a.dims and b.dims:
            left = a.dims if len(a.dims) > 1 else (1,) + a.dims
            right = b.dims if len(b.dims) > 1 else b.dims + (1,)
            batch = _broadcast([left[:-2], right[:-2]])
            if batch is None:
                return UNKNOWN
            dims = batch + (left[-2], right[-1])
            if len(a.dims) == 1:
                dims = dims[:-2] + dims[-1:]
            if len(b.dims) == 1:
                dims = dims[:-1]
            return _from_dims(dims, "it is a matrix product of shape " + str(tuple(dims)))
        if a.rank == 1 and b.rank == 1:
            return Shape("scalar", rank=0)
        if a.rank is not None and b.rank is not None and a.rank >= 1 and b.rank >= 1:
            rank = max(a.rank, b.rank) - (1 if min(a.rank, b.rank) == 1 else 0)
            return Shape("unknown", rank=rank)
        return UNKNOWN

    # -- calls ---------------------------------------------------------------------------
    def _call(self, call: cst.Call, env: Dict[str, Value]) -> Value:
        func = call.func
        qualified = self.imports.resolve(func)
        args = _split(call)
        if qualified is not None and "." in qualified:
            result = self._qualified_call(qualified, call, args, env)
            if result is not None:
                return result
        # A criterion object called on its inputs.
        callee = self.value(func, env) if isinstance(func, (cst.Name, cst.Attribute)) else UNKNOWN
        if isinstance(callee, LossFn):
            if callee.reduces is True:
                return Shape("scalar", rank=0)
            if callee.reduces is False:
                return Shape("nonscalar", why=f"`{callee.origin}` returns one loss per element")
            return UNKNOWN
        if isinstance(func, cst.Attribute) and not self._names_module(func.value):
            return self._method(func.attr.value, func.value, call, args, env)
        return UNKNOWN

    def _names_module(self, expr: cst.BaseExpression) -> bool:
        """Is `expr` an imported module (torch, F, nn...) rather than a tensor?"""
        if not isinstance(expr, (cst.Name, cst.Attribute)):
            return False
        name = dotted(expr)
        head = name.split(".")[0] if name else ""
        return head in self.imports.aliases

    def _qualified_call(
        self, qualified: str, call: cst.Call, args: _CallArgs, env: Dict[str, Value]
    ) -> Optional[Value]:
        if qualified.startswith(FUNCTIONAL):
            name = qualified[len(FUNCTIONAL) :]
            if name in LOSS_FUNCTIONS:
                return self._loss_call(name, call, args, env)
            if name in ELEMENTWISE_FUNCTIONAL and args.positional:
                return self.shape(args.positional[0], env)
            return None
        if qualified.startswith("torch.nn.") and qualified.rsplit(".", 1)[-1] in LOSS_CLASSES:
            return LossFn(self._reduces(args, 0), self.code(call))
        if not qualified.startswith(TORCH) or qualified.count(".") != 1:
            return None
        name = qualified[len(TORCH) :]
        if name in _FACTORIES or name in ("full", "randint", "eye", "arange", "linspace", "tensor", "as_tensor"):
            return self._factory(name, call, args, env)
        if name in _LIKE:
            if args.positional:
                base = self.shape(args.positional[0], env)
                why = f"`{self.code(call)}` has the shape of its argument"
                return Shape(base.kind, dims=base.dims, rank=base.rank, why=why if base.is_nonscalar else "")
            return UNKNOWN
        if name == "scalar_tensor":
            return Shape("scalar", dims=(), rank=0)
        if name in REDUCTIONS and args.positional:
            if name in ("max", "min") and len(args.positional) > 1 and _int(args.positional[1]) is None:
                return self._elementwise([self.shape(a, env) for a in args.positional[:2]])
            return self._reduction(name, self.shape(args.positional[0], env), args.positional[1:], args, call)
        if name in ("matmul", "mm", "bmm", "mv") and len(args.positional) == 2:
            return self._matmul(self.shape(args.positional[0], env), self.shape(args.positional[1], env))
        if name in ("dot", "vdot", "inner") and len(args.positional) == 2:
            if name == "inner":
                return UNKNOWN
            return Shape("scalar", dims=(), rank=0)
        if name == "stack" and args.positional:
            items = _elements(args.positional[0])
            if items is not None and len(items) >= 2:
                return Shape("nonscalar", why=f"`{self.code(call)}` stacks {len(items)} tensors")
            return UNKNOWN
        if name in ELEMENTWISE_TORCH and args.positional:
            tensor_args = args.positional[:1] if name in ("softmax", "log_softmax") else args.positional
            return self._elementwise([self.shape(a, env) for a in tensor_args])
        return None

    def _reduces(self, args: _CallArgs, skip: int) -> Optional[bool]:
        """Does a loss built/called with these arguments reduce to a scalar? None: cannot tell."""
        if args.starred:
            return None
        for extra in args.positional[skip:]:
            text = _string(extra)
            if text is not None:
                return text != "none"
        if "reduce" in args.keywords:
            flag = _bool(args.keywords["reduce"])
            if flag is None:
                return None
            if flag is False:
                return False
        if "reduction" in args.keywords:
            text = _string(args.keywords["reduction"])
            if text is None:
                return None
            return text != "none"
        return True

    def _loss_call(self, name: str, call: cst.Call, args: _CallArgs, env: Dict[str, Value]) -> Value:
        reduces = self._reduces(args, 2)
        if reduces is True:
            return Shape("scalar", rank=0)
        if reduces is None:
            return UNKNOWN
        why = f"`{self.code(call)}` returns one loss per element (`reduction='none'`)"
        if name in ELEMENTWISE_LOSSES and len(args.positional) >= 2:
            inputs = self._elementwise([self.shape(a, env) for a in args.positional[:2]])
            if inputs.dims is not None and math.prod(inputs.dims) <= 1:
                return Shape("scalar", dims=inputs.dims, rank=inputs.rank)
            return Shape("nonscalar", dims=inputs.dims, rank=inputs.rank, why=why)
        return Shape("nonscalar", why=why)

    def _factory(self, name: str, call: cst.Call, args: _CallArgs, env: Dict[str, Value]) -> Value:
        if args.starred:
            return UNKNOWN
        why = f"`{self.code(call)}` has {{n}} elements"
        dims: Optional[Tuple[int, ...]] = None
        rank: Optional[int] = None
        if name in _FACTORIES:
            sizes = [args.keywords["size"]] if "size" in args.keywords else args.positional
            if not sizes:
                return UNKNOWN
            dims, rank = _sizes(sizes)
        elif name == "full":
            size = args.keywords.get("size", args.positional[0] if args.positional else None)
            if size is None:
                return UNKNOWN
            dims, rank = _sizes([size])
        elif name == "randint":
            size = args.keywords.get("size")
            if size is None and args.positional and _elements(args.positional[-1]) is not None:
                size = args.positional[-1]
            if size is None:
                return UNKNOWN
            dims, rank = _sizes([size])
        elif name == "eye":
            sizes = args.positional[:2]
            if "m" in args.keywords:
                sizes = sizes[:1] + [args.keywords["m"]]
            if not sizes:
                return UNKNOWN
            values = [_int(s) for s in sizes]
            rank = 2
            if all(v is not None for v in values):
                dims = (values[0], values[-1])  # type: ignore[assignment]
        elif name == "arange":
            numbers = [_number(a) for a in args.positional]
            if not numbers or any(n is None for n in numbers) or len(numbers) > 3:
                return Shape("unknown", rank=1)
            start, end, step = 0.0, numbers[0], 1.0
            if len(numbers) >= 2:
                start, end = numbers[0], numbers[1]
            if len(numbers) == 3:
                step = numbers[2]
            if not step:
                return UNKNOWN
            dims, rank = (max(0, math.ceil((end - start) / step)),), 1  # type: ignore[operator]
        elif name == "linspace":
            steps = args.keywords.get("steps", args.positional[2] if len(args.positional) > 2 else None)
            count = _int(steps) if steps is not None else None
            rank = 1
            if count is not None:
                dims = (count,)
        elif name in ("tensor", "as_tensor"):
            data = args.keywords.get("data", args.positional[0] if args.positional else None)
            if data is None:
                return UNKNOWN
            dims = _nested_dims(data)
            if dims is None:
                return UNKNOWN
            rank = len(dims)
        if dims is not None:
            return _from_dims(dims, why.format(n=math.prod(dims)))
        return Shape("unknown", rank=rank)

    def _method(
        self, name: str, receiver: cst.BaseExpression, call: cst.Call, args: _CallArgs, env: Dict[str, Value]
    ) -> Value:
        if name in REDUCTIONS:
            base = self.shape(receiver, env)
            if name in ("max", "min") and args.positional and _int(args.positional[0]) is None:
                # x.max(other): elementwise maximum
                return self._elementwise([base] + [self.shape(a, env) for a in args.positional])
            return self._reduction(name, base, args.positional, args, call)
        if name in ELEMENTWISE_METHODS:
            base = self.shape(receiver, env)
            operands = [base]
            if name not in ("softmax", "log_softmax", "to", "type_as", "clamp", "clip", "masked_fill"):
                operands += [self.shape(a, env) for a in args.positional]
            return self._elementwise(operands)
        if name in NUMEL_PRESERVING:
            return self._reshape(name, self.shape(receiver, env), args)
        if name in ("expand", "repeat", "expand_as", "tile"):
            base = self.shape(receiver, env)
            return Shape("nonscalar", why=base.why) if base.is_nonscalar else UNKNOWN
        return UNKNOWN

    def _reduction(
        self, name: str, base: Shape, positional: List[cst.BaseExpression], args: _CallArgs, call: cst.Call
    ) -> Shape:
        """`x.sum()` -> scalar; `x.sum(dim=1)` of a rank-2 tensor -> non-scalar."""
        if args.starred:
            return UNKNOWN
        dim_expr = args.keywords.get("dim", args.keywords.get("axis"))
        skip = _NORM_LIKE.get(name, 0)
        if dim_expr is None and len(positional) > skip:
            candidate = positional[skip]
            if _bool(candidate) is None and _string(candidate) is None:
                dim_expr = candidate
        if dim_expr is None:
            if name in _DIM_REQUIRED:
                return UNKNOWN
            return Shape("scalar", dims=(), rank=0)
        keepdim = _bool(args.keywords.get("keepdim"))
        if keepdim is None and "keepdim" in args.keywords:
            return UNKNOWN
        if name in ("max", "min", "median", "nanmedian"):
            return UNKNOWN  # (values, indices): only their subscripts are tensors
        listed = _elements(dim_expr)
        reduced = listed if listed is not None else [dim_expr]
        if not reduced:
            return UNKNOWN
        indices = [_int(d) for d in reduced]
        why = f"`{self.code(call)}` reduces only over `dim={self.code(dim_expr)}`"
        if base.dims is not None and all(i is not None for i in indices):
            rank = len(base.dims)
            if not rank:
                return Shape("scalar", dims=(), rank=0)
            positions = {i % rank for i in indices if -rank <= i < rank}  # type: ignore[operator]
            if len(positions) != len(indices):
                return UNKNOWN
            if keepdim:
                dims = tuple(1 if k in positions else d for k, d in enumerate(base.dims))
            else:
                dims = tuple(d for k, d in enumerate(base.dims) if k not in positions)
            return _from_dims(dims, why + f" of a tensor of shape {base.dims}")
        if base.rank is not None and base.rank >= 2 and len(reduced) < base.rank:
            if listed is None or all(i is not None for i in indices):
                rank = base.rank if keepdim else base.rank - len(reduced)
                return Shape("nonscalar", rank=rank, why=why + f" of a {base.rank}-dimensional tensor")
        if base.is_nonscalar and base.rank is None and all(i is not None and i >= 1 for i in indices):
            # `per_element.sum(dim=1)`: dim 1 exists, so dim 0 (the batch) survives the reduction.
            return Shape("nonscalar", why=why + f", which keeps dim 0 of a per-element tensor; {base.why}")
        return UNKNOWN

    @staticmethod
    def _reshape(name: str, base: Shape, args: _CallArgs) -> Shape:
        """Reshaping keeps the number of elements; track the rank where it is obvious."""
        if name in ("flatten",) and not args.positional and not args.keywords:
            rank: Optional[int] = 1
            dims = (math.prod(base.dims),) if base.dims is not None else None
        elif name in ("view", "reshape") and args.positional:
            sizes = args.positional
            if len(sizes) == 1 and _elements(sizes[0]) is not None:
                sizes = _elements(sizes[0])  # type: ignore[assignment]
            values = [_int(s) for s in sizes]
            single_variable = len(sizes) == 1 and values[0] is None  # a size object: rank unknown
            rank = None if single_variable else len(values)
            dims = None
            if base.dims is not None and rank is not None and all(v is not None for v in values):
                known = [v for v in values if v != -1]
                total = math.prod(base.dims)
                if values.count(-1) <= 1 and all(v >= 0 for v in known) and math.prod(known):  # type: ignore
                    filled = [v if v != -1 else total // math.prod(known) for v in values]  # type: ignore
                    dims = tuple(filled) if math.prod(filled) == total else None  # type: ignore[arg-type]
        elif name == "unsqueeze":
            rank = base.rank + 1 if base.rank is not None else None
            dims = None
        elif name in ("t", "transpose", "permute"):
            rank = base.rank
            dims = tuple(reversed(base.dims)) if name == "t" and base.dims is not None else None
        else:
            rank, dims = None, None
        return Shape(base.kind, dims=dims, rank=rank, why=base.why)


def _broadcast(all_dims: List[Tuple[int, ...]]) -> Optional[Tuple[int, ...]]:
    """NumPy broadcasting of exact shapes; None when they do not broadcast."""
    rank = max((len(d) for d in all_dims), default=0)
    out = []
    for k in range(rank):
        sizes = {d[len(d) - rank + k] for d in all_dims if len(d) - rank + k >= 0}
        sizes.discard(1)
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Walking functions: straight-line reaching definitions


@dataclass(frozen=True)
class BackwardShape:
    """A backward call and what is known about each root it starts from."""

    call: BackwardCall
    roots: Tuple[Tuple[cst.BaseExpression, Shape], ...]


_COMPOUND_HEADERS = {
    cst.If: ("test",),
    cst.While: ("test",),
    cst.For: ("iter",),
}


def _calls_in(node: cst.CSTNode) -> List[cst.Call]:
    """Calls inside an expression or statement, not inside nested scopes or comprehensions."""
    return [n for n in walk(node, SCOPES + COMPREHENSIONS) if isinstance(n, cst.Call)]


def _target_keys(target: cst.BaseExpression) -> Iterator[str]:
    """Names (and `self.x` chains) bound by an assignment target."""
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, cst.Attribute):
        key = dotted(target)
        if key is not None:
            yield key
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from _target_keys(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from _target_keys(target.value)


_BINDERS = frozenset(
    {
        cst.AssignTarget, cst.AugAssign, cst.AnnAssign, cst.For, cst.NamedExpr, cst.WithItem, cst.FunctionDef,
        cst.ClassDef, cst.Import, cst.ImportFrom, cst.ExceptHandler, cst.Global, cst.Nonlocal, cst.Del,
    }
)


def _bound_by(node: cst.CSTNode) -> Iterator[str]:
    """Keys one node binds (an assignment target, a loop target, a def, an import, `global x`...)."""
    if type(node) not in _BINDERS:
        return
    if isinstance(node, (cst.AssignTarget, cst.AugAssign, cst.AnnAssign, cst.For, cst.NamedExpr)):
        yield from _target_keys(node.target)
    elif isinstance(node, cst.WithItem):
        if node.asname is not None:
            yield from _target_keys(node.asname.name)
    elif isinstance(node, (cst.FunctionDef, cst.ClassDef)):
        yield node.name.value
    elif isinstance(node, cst.Import):
        for alias in node.names:
            name = alias.asname.name if alias.asname else alias.name
            key = dotted(name) if isinstance(name, (cst.Name, cst.Attribute)) else None
            if key:
                yield key.split(".")[0]
    elif isinstance(node, cst.ImportFrom):
        if not isinstance(node.names, cst.ImportStar):
            for alias in node.names:
                name = alias.asname.name if alias.asname else alias.name
                if isinstance(name, cst.Name):
                    yield name.value
    elif isinstance(node, cst.ExceptHandler):
        if node.name is not None:
            yield from _target_keys(node.name.name)
    elif isinstance(node, (cst.Global, cst.Nonlocal)):
        for item in node.names:
            yield item.name.value
    elif isinstance(node, cst.Del):
        yield from _target_keys(node.target)


_ASSIGNED: Dict[int, Tuple[cst.CSTNode, frozenset]] = {}


def assigned_keys(node: cst.CSTNode) -> set:
    """Every key assigned anywhere inside a statement or block (not inside nested scopes)."""
    known = _ASSIGNED.get(id(node))
    if known is not None and known[0] is node:
        return set(known[1])
    keys: set = set()
    for current in walk(node, SCOPES):
        if type(current) in _BINDERS:
            keys.update(_bound_by(current))
    if len(_ASSIGNED) > 20000:
        _ASSIGNED.clear()  # bounded: entries keep their nodes (and modules) alive
    _ASSIGNED[id(node)] = (node, frozenset(keys))
    return keys


def _forget(env: Dict[str, Value], keys) -> Dict[str, Value]:
    """Copy of env without `keys`, and without `self.x.y` chains below a forgotten key."""
    out = dict(env)
    for key in keys:
        out.pop(key, None)
        prefix = key + "."
        for other in [k for k in out if k.startswith(prefix)]:
            out.pop(other, None)
    return out


def _merge_envs(envs: List[Dict[str, Value]]) -> Dict[str, Value]:
    if not envs:
        return {}
    merged: Dict[str, Value] = {}
    for key in set.intersection(*(set(e) for e in envs)):
        values = [e[key] for e in envs]
        if all(v == values[0] for v in values):
            merged[key] = values[0]
    return merged


class _Walker:
    """Walks one scope's statements in order, keeping the value of each name, and records the roots
    of the backward calls it meets."""

    def __init__(
        self,
        evaluator: Evaluator,
        imports: ImportMap,
        record: Dict[cst.Call, BackwardShape],
        calls: Optional["_CallSites"] = None,
    ) -> None:
        self.evaluator = evaluator
        self.imports = imports
        self.record = record
        self.calls = calls  # arguments passed to the module's functions, for a second pass
        self.self_assignments: List[Tuple[str, Value]] = []  # (`self.x`, value) in flow order

    def block(self, body, env: Dict[str, Value]) -> Dict[str, Value]:
        statements = body.body if isinstance(body, cst.BaseSuite) else body
        if isinstance(statements, cst.BaseSmallStatement):
            statements = [statements]
        for statement in statements:
            env = self.statement(statement, env)
        return env

    def _scan(self, node: cst.CSTNode, env: Dict[str, Value]) -> None:
        for call in _calls_in(node):
            if self.calls is not None:
                self.calls.note(call, env, self.evaluator)
            found = backward_call(call, self.imports)
            if found is None or found.tensor is None:
                continue
            roots = _root_expressions(found.tensor)
            shapes = tuple((root, self.evaluator.shape(root, env)) for root in roots)
            self.record[call] = BackwardShape(found, shapes)

    def statement(self, stmt: cst.CSTNode, env: Dict[str, Value]) -> Dict[str, Value]:
        if isinstance(stmt, cst.BaseSmallStatement):  # inside a one-line suite: `if c: x = y`
            return self.small(stmt, env)
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                env = self.small(small, env)
            return env
        if isinstance(stmt, cst.If):
            self._scan(stmt.test, env)
            branches = [self.block(stmt.body, dict(env))]
            orelse = stmt.orelse
            if orelse is None:
                branches.append(env)
            elif isinstance(orelse, cst.If):
                branches.append(self.statement(orelse, dict(env)))
            else:
                branches.append(self.block(orelse.body, dict(env)))
            return _merge_envs(branches)
        if isinstance(stmt, (cst.For, cst.While)):
            if isinstance(stmt, cst.For):
                self._scan(stmt.iter, env)
            changed = assigned_keys(stmt.body) | (
                set(_target_keys(stmt.target)) if isinstance(stmt, cst.For) else set()
            )
            entry = _forget(env, changed)
            if isinstance(stmt, cst.While):
                self._scan(stmt.test, entry)
            after_body = self.block(stmt.body, entry)
            after = _merge_envs([env, after_body])  # the body may run zero times
            if stmt.orelse is not None:
                after = self.block(stmt.orelse.body, after)
            return after
        if isinstance(stmt, cst.With):
            for item in stmt.items:
                self._scan(item.item, env)
                if item.asname is not None:
                    env = _forget(env, _target_keys(item.asname.name))
            return self.block(stmt.body, env)
        if isinstance(stmt, (cst.Try, getattr(cst, "TryStar", cst.Try))):
            changed = assigned_keys(stmt.body)
            after_body = self.block(stmt.body, dict(env))
            ends = []
            for handler in stmt.handlers:
                start = _forget(env, changed | assigned_keys(handler))
                ends.append(self.block(handler.body, start))
            if stmt.orelse is not None:
                after_body = self.block(stmt.orelse.body, after_body)
            ends.append(after_body)
            merged = _merge_envs(ends)
            if stmt.finalbody is not None:
                merged = self.block(stmt.finalbody.body, merged)
            return merged
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            return _forget(env, [stmt.name.value])
        # Anything else (match, async constructs...): forget what it assigns, scan it as a whole.
        changed = assigned_keys(stmt)
        env = _forget(env, changed)
        self._scan(stmt, env)
        return env

    def small(self, small: cst.BaseSmallStatement, env: Dict[str, Value]) -> Dict[str, Value]:
        self._scan(small, env)
        if isinstance(small, cst.Assign):
            value = self.evaluator.value(small.value, env)
            env = dict(env)
            for target in small.targets:
                self._bind(target.target, small.value, value, env)
            return env
        if isinstance(small, cst.AnnAssign) and small.value is not None:
            env = dict(env)
            self._bind(small.target, small.value, self.evaluator.value(small.value, env), env)
            return env
        if isinstance(small, cst.AugAssign):
            keys = list(_target_keys(small.target))
            env = dict(env)
            if len(keys) == 1 and isinstance(small.target, (cst.Name, cst.Attribute)):
                current = env.get(keys[0], UNKNOWN)
                other = self.evaluator.shape(small.value, env)
                combined = self.evaluator._elementwise([current if isinstance(current, Shape) else UNKNOWN, other])
                if isinstance(small.operator, cst.MatrixMultiplyAssign):
                    combined = UNKNOWN
                env = _forget(env, keys)
                env[keys[0]] = combined
                self._note_self(keys[0], combined)
            else:
                env = _forget(env, keys)
            return env
        changed = assigned_keys(small)
        return _forget(env, changed) if changed else env

    def _bind(self, target: cst.BaseExpression, value_expr: cst.BaseExpression, value: Value, env) -> None:
        keys = list(_target_keys(target))
        for key in keys:
            for stale in [k for k in env if k == key or k.startswith(key + ".")]:
                env.pop(stale, None)
        if isinstance(target, (cst.Name, cst.Attribute)) and len(keys) == 1:
            env[keys[0]] = value
            self._note_self(keys[0], value)
            return
        sources = _elements(value_expr)
        targets = _elements(target) if isinstance(target, (cst.Tuple, cst.List)) else None
        if sources is not None and targets is not None and len(sources) == len(targets):
            for sub_target, sub_value in zip(targets, sources):
                self._bind(sub_target, sub_value, self.evaluator.value(sub_value, env), env)
        else:
            for key in keys:
                self._note_self(key, UNKNOWN)

    def _note_self(self, key: str, value: Value) -> None:
        if key.startswith("self."):
            self.self_assignments.append((key, value))


def _root_expressions(tensor: cst.BaseExpression) -> List[cst.BaseExpression]:
    """`torch.autograd.backward([a, b])` starts from each element; otherwise from the tensor."""
    elements = _elements(tensor)
    return elements if elements is not None else [tensor]


class _CallSites:
    """What the module's own functions are called with (`train(model, criterion)` where
    `criterion = nn.MSELoss(reduction='none')`), so a parameter can carry a known criterion or shape
    into the function when every call that the file makes agrees on it."""

    def __init__(self, functions: Dict[str, cst.FunctionDef]) -> None:
        self.functions = functions
        self.seen: Dict[str, List[Optional[Dict[str, Value]]]] = {}

    def note(self, call: cst.Call, env: Dict[str, Value], evaluator: Evaluator) -> None:
        if not isinstance(call.func, cst.Name) or call.func.value not in self.functions:
            return
        fn = self.functions[call.func.value]
        args = _split(call)
        if args.starred:
            self.seen.setdefault(fn.name.value, []).append(None)  # cannot tell what goes where
            return
        positional = [p.name.value for p in list(fn.params.posonly_params) + list(fn.params.params)]
        named = set(positional) | {p.name.value for p in fn.params.kwonly_params}
        bound: Dict[str, Value] = {}
        for name, expr in zip(positional, args.positional):
            bound[name] = evaluator.value(expr, env)
        for name, expr in args.keywords.items():
            if name in named:
                bound[name] = evaluator.value(expr, env)
        self.seen.setdefault(fn.name.value, []).append(bound)

    def agreed(self, name: str) -> Dict[str, Value]:
        """Parameters every call of `name` in the file passes the same known value for."""
        sites = self.seen.get(name)
        if not sites or any(site is None for site in sites):
            return {}
        out: Dict[str, Value] = {}
        for param, value in sites[0].items():  # type: ignore[union-attr]
            if value == UNKNOWN or not all(site.get(param) == value for site in sites):  # type: ignore[union-attr]
                continue
            out[param] = value
        return out


class _ScopeIndex:
    """Module-level statements, classes and functions, for walking each scope once its globals are known."""

    def __init__(self, evaluator: Evaluator, imports: ImportMap) -> None:
        self.evaluator = evaluator
        self.imports = imports
        self.record: Dict[cst.Call, BackwardShape] = {}
        self.calls: Optional[_CallSites] = None

    def run(self, module: cst.Module) -> Dict[cst.Call, BackwardShape]:
        counts = _assignment_counts(module.body)
        functions = {
            stmt.name.value: stmt
            for stmt in module.body
            if isinstance(stmt, cst.FunctionDef) and counts.get(stmt.name.value) == 1
        }
        self.calls = _CallSites(functions)
        walker = _Walker(self.evaluator, self.imports, self.record, self.calls)
        module_env = walker.block(module.body, {})
        globals_env = {k: v for k, v in module_env.items() if counts.get(k) == 1 and "." not in k}
        self._scope_children(module.body, globals_env, class_env=None)
        # Second pass over the functions whose calls in this file pass known criteria or shapes.
        calls, self.calls = self.calls, None
        for name, fn in functions.items():
            bound = calls.agreed(name)
            if bound:
                self._function(fn, globals_env, None, bound)
        return self.record

    def _scope_children(self, body, globals_env, class_env) -> None:
        """Walk every function and class defined directly or nested in `body`."""
        for node in _definitions(body):
            if isinstance(node, cst.ClassDef):
                self._class(node, globals_env)
            else:
                self._function(node, globals_env, class_env)

    def _class(self, cls: cst.ClassDef, globals_env) -> None:
        # Class-level statements are a scope of their own.
        _Walker(self.evaluator, self.imports, self.record, self.calls).block(cls.body, dict(globals_env))
        methods = [n for n in _definitions(cls.body.body) if isinstance(n, cst.FunctionDef)]
        seen: Dict[str, List[Value]] = {}
        probe: Dict[cst.Call, BackwardShape] = {}
        for method in methods:
            walker = _Walker(self.evaluator, self.imports, probe)
            walker.block(method.body, _forget(globals_env, param_names(method)))
            for key, value in walker.self_assignments:
                seen.setdefault(key, []).append(value)
        class_env = {k: v[0] for k, v in seen.items() if len(v) == 1}
        for node in _definitions(cls.body.body):
            if isinstance(node, cst.ClassDef):
                self._class(node, globals_env)
            else:
                self._function(node, globals_env, class_env)

    def _function(self, fn: cst.FunctionDef, globals_env, class_env, bound=None) -> None:
        env = _forget(globals_env, param_names(fn) + sorted(assigned_keys(fn.body)))
        if class_env and param_names(fn)[:1] == ["self"]:
            for key, value in class_env.items():
                env[key] = value
        if bound:
            env.update(bound)
        _Walker(self.evaluator, self.imports, self.record, self.calls).block(fn.body, env)
        self._scope_children(fn.body.body, _forget(globals_env, param_names(fn) + sorted(assigned_keys(fn.body))), None)


def _definitions(body) -> Iterator[Union[cst.FunctionDef, cst.ClassDef]]:
    """Functions and classes defined in a block, including inside if/try/with/loops (not nested defs)."""
    statements = body.body if isinstance(body, cst.BaseSuite) else body
    for stmt in statements:
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            yield stmt
        elif isinstance(stmt, cst.BaseCompoundStatement):
            for child in _child_blocks(stmt):
                yield from _definitions(child)


def _child_blocks(stmt: cst.BaseCompoundStatement) -> Iterator:
    body = getattr(stmt, "body", None)
    if isinstance(body, cst.BaseSuite):
        yield body
    orelse = getattr(stmt, "orelse", None)
    if isinstance(orelse, cst.If):
        yield [orelse]
    elif orelse is not None and isinstance(getattr(orelse, "body", None), cst.BaseSuite):
        yield orelse.body
    for handler in getattr(stmt, "handlers", ()) or ():
        yield handler.body
    final = getattr(stmt, "finalbody", None)
    if final is not None:
        yield final.body
    for case in getattr(stmt, "cases", ()) or ():
        yield case.body


def _assignment_counts(body) -> Dict[str, int]:
    """How often each module-level name is bound; names bound in other ways than `=` count twice."""
    counts: Dict[str, int] = {}
    plain = (cst.AssignTarget, cst.AugAssign, cst.AnnAssign, cst.For, cst.FunctionDef, cst.ClassDef)
    for stmt in body:
        for node in walk(stmt, SCOPES):
            weight = 1 if isinstance(node, plain) else 2
            for key in _bound_by(node):
                counts[key] = counts.get(key, 0) + weight
            if isinstance(node, cst.For):
                # A name assigned in a loop body is assigned once per iteration.
                for inner in assigned_keys(node.body):
                    counts[inner] = counts.get(inner, 0) + 2
    return counts


def backward_shapes(module: cst.Module, imports: ImportMap) -> Dict[cst.Call, BackwardShape]:
    """Every backward call in the module with the inferred shape of each root it starts from."""
    evaluator = Evaluator(module, imports)
    try:
        return _ScopeIndex(evaluator, imports).run(module)
    finally:
        _ASSIGNED.clear()  # keep no tree alive after the file is done


def _no_gradient(call: BackwardCall) -> bool:
    """No `gradient` argument (or `None`) and no *args/**kwargs that might pass one."""
    gradient = call.gradient
    if gradient is not None and not (isinstance(gradient, cst.Name) and gradient.value == "None"):
        return False
    return not unknown_arguments(call.node)


def _lacks_gradient_somewhere(module: cst.Module, imports: ImportMap) -> bool:
    """Is there a backward call without a gradient? Only those can be reported, so without one
    the scope index (shapes of every function) need not be built."""
    for node in walk(module):
        if type(node) is cst.Call:
            found = backward_call(node, imports)
            if found is not None and _no_gradient(found):
                return True
    return False


def nonscalar_roots(module: cst.Module, imports: ImportMap) -> List[Tuple[BackwardCall, cst.BaseExpression, Shape]]:
    """Backward calls without a `gradient` whose root is proven not to be a scalar."""
    found = []
    if not _lacks_gradient_somewhere(module, imports):
        return found
    for item in backward_shapes(module, imports).values():
        call = item.call
        if call.gradient is not None and not (isinstance(call.gradient, cst.Name) and call.gradient.value == "None"):
            continue
        if unknown_arguments(call.node):
            continue
        for root, shape in item.roots:
            if shape.is_nonscalar:
                found.append((call, root, shape))
                break
    return found

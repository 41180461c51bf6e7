"""The torch functions and tensor methods the shape evaluator knows: losses, factories,
reductions, reshapes, `gather`. A mixin of `analysis.evaluate.Evaluator`, which supplies `value`,
`shape`, `elementwise` and `_matmul`."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import libcst as cst

from gradlint.analysis.batch_sources import loader_of
from gradlint.analysis.shapes import (
    DATA,
    OUTPUT,
    DIM_REQUIRED,
    ELEMENTWISE_FUNCTIONAL,
    ELEMENTWISE_LOSSES,
    ELEMENTWISE_METHODS,
    ELEMENTWISE_TORCH,
    FACTORIES,
    FUNCTIONAL,
    LIKE,
    ELEMENTWISE_LOSS_CLASSES,
    SAME_SHAPE_ALONG_DIM,
    LOSS_CLASSES,
    LOSS_FUNCTIONS,
    NORM_LIKE,
    NUMBER,
    NUMEL_PRESERVING,
    REDUCTIONS,
    TORCH,
    UNKNOWN,
    Const,
    Instance,
    LossFn,
    Seq,
    Shape,
    Value,
    bool_literal,
    elements,
    from_dims,
    int_literal,
    nested_dims,
    number_literal,
    short,
    sizes,
    string_literal,
)

Env = Dict[str, Value]
_BATCH_KINDS = ("output", "batched", "data")
# Functions of two tensors that reduce one dimension of their broadcast inputs, row by row:
# (name, the dim reduced when none is given; None: the last one, whatever is passed).
_ROWWISE = {"cosine_similarity": 1, "pairwise_distance": None}
_ONE = cst.Integer("1")
_LAST = cst.UnaryOperation(cst.Minus(), cst.Integer("1"))


@dataclass
class CallArgs:
    positional: List[cst.BaseExpression]
    keywords: Dict[str, cst.BaseExpression]
    starred: bool
    star_values: List[cst.BaseExpression]  # what `*x` / `**x` unpack


def split_args(call: cst.Call) -> CallArgs:
    positional: List[cst.BaseExpression] = []
    keywords: Dict[str, cst.BaseExpression] = {}
    star_values: List[cst.BaseExpression] = []
    for arg in call.args:
        if arg.star:
            star_values.append(arg.value)
        elif arg.keyword is not None:
            keywords[arg.keyword.value] = arg.value
        else:
            positional.append(arg.value)
    return CallArgs(positional, keywords, bool(star_values), star_values)


class TorchCalls:
    """Shape rules of torch calls; mixed into the evaluator."""

    module: cst.Module
    TENSOR_METHODS = (
        REDUCTIONS
        | ELEMENTWISE_METHODS
        | NUMEL_PRESERVING
        | frozenset("expand repeat expand_as tile gather item sort topk".split())
    )

    if TYPE_CHECKING:  # supplied by the evaluator this is mixed into

        def value(self, expr: cst.BaseExpression, env: Env) -> Value: ...

        def shape(self, expr: cst.BaseExpression, env: Env) -> Shape: ...

        def elementwise(self, shapes: List[Shape], op: str = "", node: Optional[cst.CSTNode] = None) -> Shape: ...

        def _matmul(self, a: Shape, b: Shape) -> Shape: ...

    def code(self, node: cst.CSTNode) -> str:
        return short(self.module.code_for_node(node))

    def qualified_call(self, qualified: str, call: cst.Call, args: CallArgs, env: Env) -> Optional[Value]:
        if qualified.startswith(FUNCTIONAL):
            name = qualified[len(FUNCTIONAL) :]
            if name in LOSS_FUNCTIONS:
                return self._loss_call(name, call, args, env)
            if name in ELEMENTWISE_FUNCTIONAL and args.positional:
                return self.shape(args.positional[0], env)
            if name in _ROWWISE:
                return self._rowwise(name, call, args, env)
            if name == "pad" and args.positional:
                return self._padded(args, env)
            return None
        if qualified.startswith("torch.nn.") and qualified.rsplit(".", 1)[-1] in LOSS_CLASSES:
            last = qualified.rsplit(".", 1)[-1]
            return LossFn(self._reduces(args, 0, env), self.code(call), elementwise=last in ELEMENTWISE_LOSS_CLASSES)
        last = qualified.rsplit(".", 1)[-1]
        if qualified.startswith("torch.nn.") and last == "ModuleList" and not args.keywords and not args.starred:
            # a list of modules: `nn.ModuleList([])`, then `.append(m)` (see analysis.shapeflow)
            listed = elements(args.positional[0]) if args.positional else []
            if listed is not None and len(args.positional) <= 1:
                return Seq(tuple(self.value(e, env) for e in listed))
        if qualified.startswith("torch.nn.") and last[:1].isupper() and not last.startswith("Parameter"):
            return Instance(None, False, qualified)  # nn.Linear(...), nn.Sequential(...)
        if qualified in ("torch.autograd.Variable", "torch.autograd.variable.Variable") and args.positional:
            return self.value(args.positional[0], env)
        if qualified.endswith(".DataLoader"):
            return loader_of(args)
        if qualified in ("torch.linalg.norm", "torch.linalg.vector_norm") and args.positional:
            # `torch.linalg.norm(x, ord, dim)`: a norm over `dim` only keeps the other dimensions
            return self.reduction("norm", self.shape(args.positional[0], env), args.positional[1:], args, call)
        if not qualified.startswith(TORCH) or qualified.count(".") != 1:
            return None
        name = qualified[len(TORCH) :]
        if name in _ROWWISE:
            return self._rowwise(name, call, args, env)
        if name in FACTORIES or name in ("full", "randint", "eye", "arange", "linspace", "tensor", "as_tensor"):
            return self._factory(name, call, args, env)
        if name in LIKE:
            if args.positional:
                base = self.shape(args.positional[0], env)
                why = f"`{self.code(call)}` has the shape of its argument"
                return Shape(base.kind, dims=base.dims, rank=base.rank, why=why if base.is_nonscalar else "")
            return UNKNOWN
        if name == "scalar_tensor":
            return Shape("scalar", dims=(), rank=0)
        if name in REDUCTIONS and args.positional:
            if name in ("max", "min") and len(args.positional) > 1 and int_literal(args.positional[1]) is None:
                return self.elementwise([self.shape(a, env) for a in args.positional[:2]])
            base = self.shape(args.positional[0], env)
            return self.reduction(name, base, args.positional[1:], args, call)
        if name in ("matmul", "mm", "bmm", "mv") and len(args.positional) == 2:
            return self._matmul(
                self.shape(args.positional[0], env),
                self.shape(args.positional[1], env),
            )
        if name in ("dot", "vdot", "inner") and len(args.positional) == 2:
            if name == "inner":
                return UNKNOWN
            return Shape("scalar", dims=(), rank=0)
        if name == "stack" and args.positional:
            items = elements(args.positional[0])
            if items is not None and len(items) >= 2:
                return Shape("nonscalar", why=f"`{self.code(call)}` stacks {len(items)} tensors")
            built = self._tensors(args.positional[0], env) if items is None else None
            if built is not None and len(built) >= 2:  # a list of tensors built earlier
                return Shape("nonscalar", why=f"`{self.code(call)}` stacks {len(built)} tensors")
            return UNKNOWN
        if name in ("cat", "concat", "concatenate"):
            return self._concat(call, args, env)
        if name == "gather" and args.positional:
            return self._gather(self.shape(args.positional[0], env), args.positional[1:], args, call)
        if name in ELEMENTWISE_TORCH and args.positional:
            tensor_args = args.positional[:1] if name in ("softmax", "log_softmax") else args.positional
            return self.elementwise([self.shape(a, env) for a in tensor_args])
        return None

    def _tensors(self, expr: cst.BaseExpression, env: Env) -> Optional[List[Shape]]:
        """The tensors of a literal tuple/list or of a list known to hold them; None otherwise."""
        items = elements(expr)
        if items is not None:
            return [self.shape(e, env) for e in items]
        value = self.value(expr, env)
        if isinstance(value, Seq):
            return [v if isinstance(v, Shape) else UNKNOWN for v in value.items]
        return None

    def _concat(self, call: cst.Call, args: CallArgs, env: Env) -> Shape:
        """`torch.cat([a, b], dim)`: never fewer elements than any of its tensors, so one with
        several elements (always, per sample, per GPU) makes the result so along any dim; all
        tensors keep their rank. The chosen and rejected halves of a preference batch
        concatenated are a batch; model outputs concatenated, an output; a batch padded with
        a tensor of unknown size (`torch.cat([x, pad], dim=1)`), still the batch."""
        given = args.keywords.get("tensors", args.positional[0] if args.positional else None)
        if given is None or args.starred:
            return UNKNOWN
        shapes = self._tensors(given, env)
        if not shapes:
            return UNKNOWN
        ranks = {s.rank for s in shapes if s.rank is not None}
        rank = ranks.pop() if len(ranks) == 1 else None
        least = max(s.least_rank for s in shapes)
        for kind in ("nonscalar", "batched", "gathered"):
            for s in shapes:
                if s.kind == kind:
                    return Shape(kind, rank=rank, why=s.why, min_rank=least if rank is None else 0)
        kinds = {s.kind for s in shapes}
        if "output" in kinds:
            return OUTPUT
        if "data" in kinds:
            return DATA
        return UNKNOWN

    def _padded(self, args: CallArgs, env: Env) -> Shape:
        """`F.pad(x, (0, n), value=pad_id)`: the same dimensions, none smaller, so a batch stays
        a batch and a per-sample tensor per sample; negative (cropping) padding: not known."""
        base = self.shape(args.positional[0], env)
        widths = args.keywords.get("pad", args.positional[1] if len(args.positional) > 1 else None)
        listed = elements(widths) if widths is not None else None
        if listed is None or any((number_literal(w) or 0) < 0 for w in listed):
            return UNKNOWN
        return base if base.kind in _BATCH_KINDS else UNKNOWN

    def _reduces(self, args: CallArgs, skip: int, env: Env) -> Optional[bool]:
        """Does a loss built/called with these arguments reduce to a scalar? None: cannot tell."""
        if args.starred:
            return None
        for extra in args.positional[skip:]:
            text = string_literal(extra)
            if text is not None:
                return text != "none"
        if "reduce" in args.keywords:
            flag = bool_literal(args.keywords["reduce"])
            if flag is None:
                return None
            if flag is False:
                return False
        if "reduction" in args.keywords:
            given = args.keywords["reduction"]
            text = string_literal(given)
            if text is None and isinstance(given, cst.Name):
                known = self.value(given, env)  # `reduction = "none"` earlier in the scope
                text = known.text if isinstance(known, Const) else None
            if text is None:
                return None
            return text != "none"
        return True

    def _loss_call(self, name: str, call: cst.Call, args: CallArgs, env: Env) -> Value:
        reduces = self._reduces(args, 2, env)
        if reduces is True:
            return Shape("scalar", rank=0)
        if reduces is None:
            return UNKNOWN
        why = f"`{self.code(call)}` returns one loss per element (`reduction='none'`)"
        if name in ELEMENTWISE_LOSSES and len(args.positional) >= 2:
            inputs = self.elementwise([self.shape(a, env) for a in args.positional[:2]])
            if inputs.dims is not None and math.prod(inputs.dims) <= 1:
                return Shape("scalar", dims=inputs.dims, rank=inputs.rank)
            return Shape("nonscalar", dims=inputs.dims, rank=inputs.rank, why=why, like_output=inputs.like_output)
        return Shape("nonscalar", why=why)

    def _rowwise(self, name: str, call: cst.Call, args: CallArgs, env: Env) -> Value:
        """`F.cosine_similarity(za, zb, dim=1)`: one value per row of the inputs, so a batch of
        embeddings gives one similarity per sample (as `(za * zb).sum(dim=1)` does);
        `F.pairwise_distance(a, b)` reduces the last dimension."""
        if args.starred or len(args.positional) < 2:
            return UNKNOWN
        base = self.elementwise([self.shape(a, env) for a in args.positional[:2]])
        default = _ROWWISE[name]
        dim_expr: cst.BaseExpression = _LAST
        if default is not None:
            given = args.keywords.get("dim", args.positional[2] if len(args.positional) > 2 else None)
            dim_expr = given if given is not None else _ONE
            if int_literal(dim_expr) is None:
                return UNKNOWN
        keepdim = bool_literal(args.keywords.get("keepdim")) if default is None else False
        if keepdim is None and "keepdim" in args.keywords:
            return UNKNOWN
        return self._reduced(base, dim_expr, bool(keepdim), call)

    def _factory(self, name: str, call: cst.Call, args: CallArgs, env: Env) -> Value:
        if args.starred:
            return UNKNOWN
        why = f"`{self.code(call)}` has {{n}} elements"
        dims: Optional[Tuple[int, ...]] = None
        rank: Optional[int] = None
        if name in FACTORIES:
            given = [args.keywords["size"]] if "size" in args.keywords else args.positional
            if not given:
                return UNKNOWN
            dims, rank = sizes(given)
        elif name == "full":
            size = args.keywords.get("size", args.positional[0] if args.positional else None)
            if size is None:
                return UNKNOWN
            dims, rank = sizes([size])
        elif name == "randint":
            size = args.keywords.get("size")
            if size is None and args.positional and elements(args.positional[-1]) is not None:
                size = args.positional[-1]
            if size is None:
                return UNKNOWN
            dims, rank = sizes([size])
        elif name == "eye":
            given = args.positional[:2]
            if "m" in args.keywords:
                given = given[:1] + [args.keywords["m"]]
            if not given:
                return UNKNOWN
            values = [int_literal(s) for s in given]
            rank = 2
            if all(v is not None for v in values):
                dims = (values[0], values[-1])  # type: ignore[assignment]
        elif name == "arange":
            given_numbers = [number_literal(a) for a in args.positional]
            numbers = [n for n in given_numbers if n is not None]
            if not numbers or len(numbers) != len(given_numbers) or len(numbers) > 3:
                return Shape("unknown", rank=1)
            start, end, step = 0.0, numbers[0], 1.0
            if len(numbers) >= 2:
                start, end = numbers[0], numbers[1]
            if len(numbers) == 3:
                step = numbers[2]
            if not step:
                return UNKNOWN
            dims, rank = (max(0, math.ceil((end - start) / step)),), 1
        elif name == "linspace":
            steps = args.keywords.get("steps", args.positional[2] if len(args.positional) > 2 else None)
            count = int_literal(steps) if steps is not None else None
            rank = 1
            if count is not None:
                dims = (count,)
        elif name in ("tensor", "as_tensor"):
            data = args.keywords.get("data", args.positional[0] if args.positional else None)
            if data is None:
                return UNKNOWN
            dims = nested_dims(data)
            if dims is None:
                return UNKNOWN
            rank = len(dims)
        if dims is not None:
            return from_dims(dims, why.format(n=math.prod(dims)))
        return Shape("unknown", rank=rank)

    def method(self, name: str, receiver: cst.BaseExpression, call: cst.Call, args: CallArgs, env: Env) -> Value:
        """A tensor method called on `receiver`."""
        base = self.shape(receiver, env)
        if name in REDUCTIONS:
            if name in ("max", "min") and args.positional and int_literal(args.positional[0]) is None:
                # x.max(other): elementwise maximum
                return self.elementwise([base] + [self.shape(a, env) for a in args.positional])
            return self.reduction(name, base, args.positional, args, call)
        if name in ELEMENTWISE_METHODS:
            operands = [base]
            if name not in ("softmax", "log_softmax", "to", "type_as", "clamp", "clip", "masked_fill",
                            *SAME_SHAPE_ALONG_DIM):
                operands += [self.shape(a, env) for a in args.positional]
            return self.elementwise(operands, "sub" if name in ("sub", "subtract") else "", call)
        if name in NUMEL_PRESERVING:
            return self._reshape(name, base, args, call)
        if name in ("expand", "repeat", "expand_as", "tile"):
            return Shape("nonscalar", why=base.why) if base.is_nonscalar else UNKNOWN
        if name == "gather":
            return self._gather(base, args.positional, args, call)
        if name == "sort" and not args.starred:
            return Seq((base, UNKNOWN))  # (values, indices): the values keep the shape
        if name == "topk":
            return Seq((self._top(base, args, call), UNKNOWN))
        if name == "item":
            return NUMBER
        return UNKNOWN

    def _top(self, base: Shape, args: CallArgs, call: cst.Call) -> Shape:
        """`x.topk(k)` values: k per row of the reduced dimension, so k >= 2 (a literal) is never
        one element (torch raises when a row holds fewer than k)."""
        given = args.keywords.get("k", args.positional[0] if args.positional else None)
        count = int_literal(given) if given is not None else None
        if args.starred or count is None:
            return UNKNOWN
        if count >= 2 and base.is_nonscalar:
            return Shape("nonscalar", why=f"`{self.code(call)}` keeps {count} values")
        return UNKNOWN

    def _gather(self, base: Shape, positional: List[cst.BaseExpression], args: CallArgs, call: cst.Call) -> Shape:
        """`q.gather(1, actions)`: one entry per row, so dim 0 (the batch) stays."""
        dim_expr = args.keywords.get("dim", positional[0] if positional else None)
        dim = int_literal(dim_expr) if dim_expr is not None else None
        if dim is not None and dim != 0 and base.kind in _BATCH_KINDS:
            least = max(base.least_rank, dim + 1) if dim > 0 else base.least_rank  # same rank as the input
            if base.kind == "batched":
                return base if least == base.least_rank else replace(base, min_rank=least)
            return Shape("batched", why=f"`{self.code(call)}` picks one entry per sample of a batch", min_rank=least)
        return UNKNOWN

    def reduction(
        self, name: str, base: Shape, positional: List[cst.BaseExpression], args: CallArgs, call: cst.Call
    ) -> Value:
        """`x.sum()` -> scalar; `x.sum(dim=1)` of a rank-2 tensor -> non-scalar."""
        if args.starred:
            return UNKNOWN
        dim_expr = args.keywords.get("dim", args.keywords.get("axis"))
        skip = NORM_LIKE.get(name, 0)
        if dim_expr is None and len(positional) > skip:
            candidate = positional[skip]
            if bool_literal(candidate) is None and string_literal(candidate) is None:
                dim_expr = candidate
        if dim_expr is None:
            if name in DIM_REQUIRED:
                return UNKNOWN
            return Shape("scalar", dims=(), rank=0)
        keepdim = bool_literal(args.keywords.get("keepdim"))
        if keepdim is None and "keepdim" in args.keywords:
            return UNKNOWN
        reduced = self._reduced(base, dim_expr, bool(keepdim), call)
        if name in ("max", "min", "median", "nanmedian"):
            return Seq((reduced, UNKNOWN))  # (values, indices)
        return reduced

    def _reduced(self, base: Shape, dim_expr: cst.BaseExpression, keepdim: bool, call: cst.Call) -> Shape:
        listed = elements(dim_expr)
        reduced = listed if listed is not None else [dim_expr]
        if not reduced:
            return UNKNOWN
        indices = [int_literal(d) for d in reduced]
        why = f"`{self.code(call)}` reduces only over `dim={self.code(dim_expr)}`"
        known = all(i is not None for i in indices)
        if base.dims is not None and known:
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
            return from_dims(dims, why + f" of a tensor of shape {base.dims}")
        if base.rank is not None and base.rank >= 2 and len(reduced) < base.rank:
            if listed is None or known:
                rank = base.rank if keepdim else base.rank - len(reduced)
                return Shape("nonscalar", rank=rank, why=why + f" of a {base.rank}-dimensional tensor")
        at_least_one = known and all(i >= 1 for i in indices)  # type: ignore[operator]
        if base.kind == "nonscalar" and base.rank is None and at_least_one:
            # `per_element.sum(dim=1)`: dim 1 exists, so dim 0 (the batch) survives the reduction.
            return Shape("nonscalar", why=why + f", which keeps dim 0 of a per-element tensor; {base.why}")
        if base.kind == "batched" and at_least_one:
            return replace(base, like_output=False)
        least = base.least_rank
        if base.kind == "batched" and known and all(0 < -i < least for i in indices):  # type: ignore[operator]
            # `(per_token * mask).sum(-1)` of a per-sample tensor of at least 2 dims: the last
            # dims go, dim 0 (the batch) stays
            remaining = least if keepdim else least - len(indices)
            return Shape("batched", why=why + " of a per-sample tensor, keeping one value per sample",
                         min_rank=max(remaining, 1))
        if base.kind == "data" and at_least_one:
            return DATA
        if base.kind == "output" and known and all(i > 0 or (i < 0 and base.like_output) for i in indices):  # type: ignore[operator]
            return Shape("batched", why=why + " of a model's output for a batch, keeping one value per sample")
        if base.like_output and base.kind in ("batched", "nonscalar") and known and all(i != 0 for i in indices):  # type: ignore[operator]
            # `(pred - y).abs().sum(dim=-1)`: at least the output's dimensions, so as for the output
            return Shape("batched", why=why + " of a per-element tensor of a model's output for a batch, "
                         "keeping one value per sample")
        return UNKNOWN

    def _reshape(self, name: str, base: Shape, args: CallArgs, call: cst.Call) -> Shape:
        """Reshaping keeps the number of elements; track the rank where it is obvious."""
        kind, why = base.kind, base.why
        dims: Optional[Tuple[int, ...]]
        if name in ("flatten",) and not args.positional and not args.keywords:
            rank: Optional[int] = 1
            dims = (math.prod(base.dims),) if base.dims is not None else None
        elif name in ("view", "reshape") and args.positional:
            given = args.positional
            if len(given) == 1 and elements(given[0]) is not None:
                given = elements(given[0])  # type: ignore[assignment]
            values = [int_literal(s) for s in given]
            single_variable = len(given) == 1 and values[0] is None  # a size object: rank unknown
            rank = None if single_variable else len(values)
            dims = None
            exact = [v for v in values if v is not None]
            if base.dims is not None and rank is not None and len(exact) == len(values):
                known = [v for v in exact if v != -1]
                total = math.prod(base.dims)
                if exact.count(-1) <= 1 and all(v >= 0 for v in known) and math.prod(known):  # type: ignore[arg-type]
                    filled = [v if v != -1 else total // math.prod(known) for v in exact]
                    dims = tuple(filled) if math.prod(filled) == total else None
            if kind == "output" and len(values) >= 2 and values[0] is None:
                # `out.view(B, -1)` with a batch size B: one row per sample
                kind, why = "batched", f"`{self.code(call)}` lays a model's output out one row per sample"
        elif name == "unsqueeze":
            rank = base.rank + 1 if base.rank is not None else None
            dims = None
        elif name in ("t", "transpose", "permute"):
            rank = base.rank
            dims = tuple(reversed(base.dims)) if name == "t" and base.dims is not None else None
        else:
            rank, dims = None, None
        least = 0
        if kind == "batched" and rank is None:
            least = _reshaped_rank(name, base.least_rank, args)
        # adding or reordering dimensions keeps at least those of the output; squeezing, flattening
        # and views may drop some (`q(s).squeeze(-1)` of a `(B, 1)` output is `(B,)`)
        like_output = base.like_output and kind == base.kind and name in ("unsqueeze", "t", "transpose", "permute")
        return Shape(kind, dims=dims, rank=rank, why=why, min_rank=least, like_output=like_output)


def _reshaped_rank(name: str, least: int, args: CallArgs) -> int:
    """Dimensions a reshaped per-sample tensor has at least, from those it had at least:
    `unsqueeze` adds one, `squeeze(d)` may remove dim d, transposes keep them all."""
    dim = int_literal(args.positional[0]) if len(args.positional) == 1 and not args.keywords else None
    if name == "unsqueeze":
        return least + 1
    if name in ("transpose", "permute", "t"):
        return least
    if name == "squeeze" and dim is not None:
        return max(least, dim + 1) - 1 if dim >= 0 else max(least - 1, 0)
    return 0

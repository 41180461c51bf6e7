"""The shape lattice GL003 reasons in, and the torch vocabulary its expression rules use.

A tensor's size is abstracted to a `Shape` whose `kind` is one of

- "scalar": one element (`.mean()`, default-reduction losses, `torch.tensor(2.0)`);
- "nonscalar": more than one element whatever the input (`torch.eye(4)`, `reduction='none'`);
- "batched": one value per sample of a batch: more than one element whenever the batch holds more
  than one sample (`(pred - y) ** 2` for a model's predictions `pred` on a loader's batch);
- "gathered": what `nn.DataParallel` hands back: it concatenates the replicas' results along dim 0,
  so a forward's 0-dim loss becomes one loss per GPU, and any tensor it returns (alone or in a
  tuple, dict or output record) holds at least one element per GPU: more than one element on more
  than one GPU. Reduced (`.mean()`, `.sum()`) it is a scalar again;
- "data": what a data loader yields for a batch (a batch of inputs, not itself a loss);
- "output": what a model returns for such a batch: predictions, features, or maybe a 0-dim loss or
  a dict (models differ), so it is not reported as it is; used as predictions it becomes "batched";
- "unknown": anything else. Unknown, data and output keep the rule silent.

Besides shapes the analysis tracks criteria (`LossFn`), containers returned by functions (`Seq` for
tuples, `Struct` for dicts and output records) and module objects (`Instance`), so that values flow
through `model(x)["loss"]`, `_, loss = net(x)` and `self.criterion = PairLoss()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import List, Optional, Tuple, Union

import libcst as cst

from gradlint.analysis.shape_conditions import CONDITIONS, REPORTED


@dataclass(frozen=True)
class Shape:
    """What is known about a tensor's size (see the module docstring for the kinds)."""

    kind: str
    dims: Optional[Tuple[int, ...]] = None  # exact sizes, when every one is a literal
    rank: Optional[int] = None  # exact number of dimensions, when known
    why: str = ""  # for a reported kind: where its extra elements come from (for messages)
    min_rank: int = 0  # dimensions it has at least (`x[:, :-1, :]` has 3), when `rank` is not known
    # At least the dimensions of a model's output for a batch: the output itself (not squeezed or
    # flattened), or element by element of it and the batch (`(pred - y).abs()`, `mse_loss(pred, y,
    # reduction='none')`). A reduction over a dimension other than 0, even `dim=-1`, then keeps
    # one value per sample, as the contract has it for model outputs used as predictions.
    like_output: bool = False

    @property
    def least_rank(self) -> int:
        """Dimensions it has at least: its rank when known, else `min_rank`."""
        return self.rank if self.rank is not None else self.min_rank

    @property
    def is_scalar(self) -> bool:
        return self.kind == "scalar"

    @property
    def is_nonscalar(self) -> bool:
        """More than one element for certain, or under the condition its kind states."""
        return self.kind in REPORTED

    @property
    def condition(self) -> str:
        return CONDITIONS.get(self.kind, "")


@dataclass(frozen=True)
class LossFn:
    """A criterion object such as `nn.MSELoss(reduction='none')`; reduces: None when unknown."""

    reduces: Optional[bool]
    origin: str
    gathered: bool = False  # wrapped in `nn.DataParallel`: one loss per GPU comes back
    elementwise: bool = False  # one loss per element of its broadcast inputs (`nn.MSELoss`), unreduced

    def unwrapped(self) -> "LossFn":
        return LossFn(self.reduces, self.origin, elementwise=self.elementwise)


@dataclass(frozen=True)
class Seq:
    """A tuple or list of values (`return logits, loss`; `x.max(1)` -> (values, indices))."""

    items: Tuple["Value", ...]


@dataclass(frozen=True)
class Struct:
    """A dict or an output record with known fields (`{"loss": l}`, `Output(loss=l, logits=z)`)."""

    fields: Tuple[Tuple[str, "Value"], ...]

    def get(self, key: str) -> Optional["Value"]:
        for name, value in self.fields:
            if name == key:
                return value
        return None

    def with_field(self, key: str, value: "Value") -> "Struct":
        """The record after `record[key] = value` (a dict of losses built key by key)."""
        kept = tuple((k, v) for k, v in self.fields if k != key)
        return Struct(kept + ((key, value),))


@dataclass(frozen=True)
class Instance:
    """A module object. `cls` is (file path, class name) for a project class, None for a library
    module (`nn.Linear(...)`); `gathered`: wrapped in `nn.DataParallel` (or a subclass of it)."""

    cls: Optional[Tuple[str, str]]
    gathered: bool = False
    library: str = ""

    def unwrapped(self) -> "Instance":
        return Instance(self.cls, False, self.library)


@dataclass(frozen=True)
class Helper:
    """A function defined inside the function being read (`def pad_to(t, n): ...` in a method),
    called there: summarised with the caller's values of the names it reads from around it."""

    fn: cst.FunctionDef


@dataclass(frozen=True)
class Const:
    """A string constant (`reduction = "none"`), for the arguments that take one."""

    text: str


@dataclass(frozen=True)
class Flag:
    """`True` or `False`, for the flags a call passes (`model(x, y, True)` into `is_train`)."""

    value: bool


Value = Union[Shape, LossFn, Seq, Struct, Instance, Const, Flag, Helper]
UNKNOWN = Shape("unknown")
NUMBER = Shape("scalar", dims=(), rank=0)
DATA = Shape("data")
OUTPUT = Shape("output", like_output=True)


def from_dims(dims: Tuple[int, ...], why: str) -> Shape:
    numel = math.prod(dims)
    if numel == 1:
        return Shape("scalar", dims=dims, rank=len(dims))
    if numel == 0:
        return Shape("unknown", dims=dims, rank=len(dims))
    return Shape("nonscalar", dims=dims, rank=len(dims), why=why)


def _wraps(value: Optional[Value]) -> bool:
    return isinstance(value, (Instance, LossFn)) and value.gathered


def _unsure(value: Optional[Value]) -> bool:
    """Nothing bound, or a tensor of unknown size (maybe a model's output)."""
    return value is None or (isinstance(value, Shape) and value.kind in ("unknown", "output") and value.dims is None)


def merge(a: Optional[Value], b: Optional[Value]) -> Value:
    """The value of a name that may come from either of two definitions.

    Equal values survive. A DataParallel wrap survives a merge with anything but another value:
    `if torch.cuda.device_count() > 1: net = nn.DataParallel(net)` (whatever `net` was before,
    a module, a criterion, a model built elsewhere, or `net = DDP(net)` on the other arm) leaves a
    module that gathers on a machine with several GPUs, where the wrap happens.

    Likewise what such a module handed back ("gathered") survives a merge with a path that binds
    nothing known, or a model's output of unknown size: `if model_needs_target: out, loss =
    dp_net(x, y)` / `else: loss = crit(out, y)` backpropagates one loss per GPU on the first path.
    Against a known value (`loss.mean()` on the other path) it does not survive."""
    if a == b and a is not None:
        return a
    if isinstance(a, Shape) and isinstance(b, Shape) and a.kind in REPORTED and a == replace(b, min_rank=a.min_rank):
        return a if a.min_rank <= b.min_rank else b  # the same value, its rank bound known less well on one path
    for gathered, other in ((a, b), (b, a)):
        if isinstance(gathered, Shape) and gathered.kind == "gathered" and _unsure(other):
            return gathered
    for wrap, other in ((a, b), (b, a)):
        if _wraps(wrap) and (other is None or other == UNKNOWN or isinstance(other, (Instance, LossFn))):
            if isinstance(wrap, LossFn) and isinstance(other, LossFn) and other.unwrapped() != wrap.unwrapped():
                continue
            return wrap  # type: ignore[return-value]
    return UNKNOWN


def merge_envs(envs: List[dict]) -> dict:
    """Names bound on every path keep a value they agree on; a name bound on some paths only
    is unknown on the others (which a DataParallel wrap survives, see `merge`)."""
    if not envs:
        return {}
    merged: dict = {}
    for key in set().union(*(set(e) for e in envs)):
        value = envs[0].get(key)
        for other in envs[1:]:
            value = merge(value, other.get(key))
            if value == UNKNOWN:
                break
        if value is not None and value != UNKNOWN:
            merged[key] = value
    return merged


GATHER_WHY = "`{name}` is wrapped in `nn.DataParallel`, whose forward returns a 0-dim loss per replica"
CONCAT_WHY = (
    "`{name}` is wrapped in `nn.DataParallel`, which concatenates what each replica returns along dim 0: "
    "at least one value per GPU"
)


def per_gpu(name: str) -> Shape:
    """What a DataParallel-wrapped module of unknown forward hands back: tensors (alone or in a
    tuple, dict or record) each holding at least one value per GPU."""
    return Shape("gathered", why=CONCAT_WHY.format(name=name))


def gather(value: Optional[Value], name: str) -> Value:
    """What DataParallel hands back for a forward that returns `value`: each 0-dim tensor becomes
    one value per replica; a tensor of unknown size at least one value per replica; per-sample
    outputs stay per-sample (concatenated along the batch)."""
    if isinstance(value, Shape):
        if value.is_scalar:
            return Shape("gathered", rank=1, why=GATHER_WHY.format(name=name))
        if value.kind == "unknown":
            return per_gpu(name)
        return value
    if isinstance(value, Struct):
        return Struct(tuple((k, gather(v, name)) for k, v in value.fields))
    if isinstance(value, Seq):
        return Seq(tuple(gather(v, name) for v in value.items))
    return per_gpu(name)


def is_per_gpu(value: Value) -> bool:
    """A gathered result whose structure is not known (a tensor, or a tuple/dict of tensors)."""
    return isinstance(value, Shape) and value.kind == "gathered" and value.rank is None and value.dims is None


def broadcast(all_dims: List[Tuple[int, ...]]) -> Optional[Tuple[int, ...]]:
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
ELEMENTWISE_LOSS_CLASSES = frozenset(
    "L1Loss MSELoss SmoothL1Loss HuberLoss BCELoss BCEWithLogitsLoss KLDivLoss PoissonNLLLoss".split()
)
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
NORM_LIKE = {"norm": 1}  # x.norm(p, dim)
DIM_REQUIRED = frozenset({"logsumexp"})

SAME_SHAPE_ALONG_DIM = "cumsum cumprod logcumsumexp flip fliplr flipud roll".split()
ELEMENTWISE_METHODS = frozenset(
    "exp log log1p log2 log10 expm1 abs neg negative sqrt rsqrt square pow sigmoid tanh relu clamp clamp_min "
    "clamp_max clip sin cos reciprocal float double half bfloat16 to cuda cpu contiguous clone mul add sub "
    "div true_divide multiply subtract divide mul_ add_ sub_ div_ pow_ exp_ clamp_ softmax log_softmax "
    "masked_fill type_as requires_grad_ nan_to_num lerp addcmul addcdiv where detach".split()
    # the same shape, rearranged or accumulated along a dimension (their arguments are dims)
    + SAME_SHAPE_ALONG_DIM
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

FACTORIES = frozenset("zeros ones empty rand randn".split())
LIKE = frozenset("zeros_like ones_like empty_like rand_like randn_like full_like randint_like".split())

TORCH = "torch."
FUNCTIONAL = "torch.nn.functional."


# --------------------------------------------------------------------------------------------
# Reading literal arguments


def int_literal(expr: cst.BaseExpression) -> Optional[int]:
    """An integer literal (also `-1`), else None."""
    if isinstance(expr, cst.Integer):
        try:
            return int(expr.value.replace("_", ""), 0)
        except ValueError:
            return None
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        inner = int_literal(expr.expression)
        return -inner if inner is not None else None
    return None


def number_literal(expr: cst.BaseExpression) -> Optional[float]:
    value = int_literal(expr)
    if value is not None:
        return float(value)
    if isinstance(expr, cst.Float):
        try:
            return float(expr.value.replace("_", ""))
        except ValueError:
            return None
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        inner = number_literal(expr.expression)
        return -inner if inner is not None else None
    return None


def string_literal(expr: Optional[cst.BaseExpression]) -> Optional[str]:
    if isinstance(expr, cst.SimpleString):
        try:
            value = expr.evaluated_value
        except Exception:  # odd prefixes: not a plain literal
            return None
        return value if isinstance(value, str) else None
    return None


def bool_literal(expr: Optional[cst.BaseExpression]) -> Optional[bool]:
    if isinstance(expr, cst.Name) and expr.value in ("True", "False"):
        return expr.value == "True"
    return None


def elements(expr: cst.BaseExpression) -> Optional[List[cst.BaseExpression]]:
    """Elements of a literal tuple/list without starred items, else None."""
    if isinstance(expr, (cst.Tuple, cst.List)):
        if any(isinstance(el, cst.StarredElement) for el in expr.elements):
            return None
        return [el.value for el in expr.elements]
    return None


def sizes(exprs: List[cst.BaseExpression]) -> Tuple[Optional[Tuple[int, ...]], Optional[int]]:
    """Sizes given as `3, 4` or `(3, 4)`: (exact dims or None, rank or None)."""
    if len(exprs) == 1:
        inner = elements(exprs[0])
        if inner is not None:
            exprs = inner
        elif int_literal(exprs[0]) is None:
            return None, None  # a single variable: a size object or an int, rank unknown
    values = [int_literal(e) for e in exprs]
    if all(v is not None and v >= 0 for v in values):
        return tuple(values), len(values)  # type: ignore[arg-type]
    return None, len(exprs)


def nested_dims(expr: cst.BaseExpression) -> Optional[Tuple[int, ...]]:
    """Shape of a nested list literal of numbers: `[[1., 2.], [3., 4.]]` -> (2, 2)."""
    if number_literal(expr) is not None:
        return ()
    items = elements(expr)
    if items is None or not items:
        return None
    inner = [nested_dims(e) for e in items]
    if any(d is None for d in inner) or len(set(inner)) != 1:
        return None
    return (len(items),) + inner[0]  # type: ignore[operator]


def short(code: str, limit: int = 60) -> str:
    code = " ".join(code.split())
    return code if len(code) <= limit else code[: limit - 3] + "..."

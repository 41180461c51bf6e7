"""What an expression reads: the names whose autograd history may flow into its value.

The vocabulary GL002's proof is built on. `ReadCollector.reads(expr)` says which variables an
expression takes its value from (`model(x)` reads `x`, not `model`; `h.detach()` reads nothing),
whether it calls something unknown that may create a graph of its own (`opaque`), and whether its
value has no history whatever it reads (`INERT`: factories, `.item()`, comparisons) or is a new leaf
(`LEAF`: `torch.randn(..., requires_grad=True)`, `nn.Parameter`). Scopes in graphs.py turn these
into classes of definitions.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, Iterator, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.tree import COMPREHENSIONS, SCOPES, children

INERT = "inert"  # no autograd history and no requires_grad: links no graphs
LEAF = "leaf"  # a tensor that requires grad but has no history (a parameter-like leaf)
GRAPH = "graph"  # may carry autograd history
UNKNOWN = "unknown"  # defined outside the function (parameters, unknown globals)

BUILTINS = frozenset(dir(builtins))
# Builtins whose result carries no graph whatever they are given.
CUT_BUILTINS = frozenset(
    "len int float bool str repr range isinstance issubclass type print hash id format callable hasattr "
    "round divmod ord chr bin hex oct vars dir open input".split()
)
# Attribute reads that give values with no autograd history.
CUT_ATTRIBUTES = frozenset(
    "shape dtype device grad data requires_grad is_leaf ndim grad_fn is_cuda layout names".split()
)
# Tensor methods whose result has no autograd history.
CUT_METHODS = frozenset(
    "detach item tolist numpy size dim numel nelement element_size argmax argmin argsort eq ne gt lt ge le "
    "isnan isinf isfinite nonzero long int bool byte short char new_zeros new_ones new_empty new_full "
    "new_tensor data_ptr stride is_contiguous storage_offset equal allclose sign floor_divide "
    "get_device untyped_storage".split()
)
# Tensor methods whose result is computed from the receiver only (the arguments are sizes, dims,
# devices or dtypes).
RECEIVER_METHODS = frozenset(
    "to cuda cpu float double half bfloat16 type view reshape expand repeat permute transpose t flatten "
    "unflatten squeeze unsqueeze narrow chunk split unbind contiguous clone view_as reshape_as expand_as "
    "type_as sum mean prod norm max min amax amin std var logsumexp median nansum nanmean softmax "
    "log_softmax exp log log1p expm1 abs neg sqrt rsqrt square sigmoid tanh relu cumsum cumprod flip roll "
    "diagonal diag triu tril trace T mT movedim squeeze_ unsqueeze_ repeat_interleave".split()
)
# Tensor methods whose result depends on the receiver and the tensor arguments.
DATA_METHODS = frozenset(
    "add sub mul div pow matmul mm bmm mv dot true_divide multiply subtract divide add_ sub_ mul_ div_ "
    "pow_ clamp clamp_ clamp_min clamp_max clip masked_fill masked_fill_ masked_select where gather "
    "index_select scatter scatter_add lerp addcmul addcdiv maximum minimum copy_ fill_ zero_ "
    "__getitem__ index_put".split()
)
LEAF_METHODS = frozenset({"requires_grad_"})
# Losses whose target is class indices (integers): no gradient reaches the target.
INDEX_TARGET_LOSSES = frozenset(
    "torch.nn.functional." + name for name in ("nll_loss", "multi_margin_loss", "multilabel_margin_loss")
)
# Methods only modules, optimizers and the like have: their receiver is not a tensor.
OBJECT_METHODS = frozenset(
    "parameters named_parameters train eval state_dict load_state_dict modules named_modules children "
    "zero_grad buffers named_buffers apply forward register_forward_hook register_full_backward_hook "
    "get_submodule add_module step".split()
)
# Reductions returning (values, indices): the indices (`[1]`, `.indices`) are integers.
INDEXED_REDUCTIONS = frozenset("topk sort max min kthvalue mode median nanmedian cummax cummin".split())
# Builtins that fetch the next element of a data source, like a loop target.
FETCH_BUILTINS = frozenset({"next", "iter"})
CONTAINER_STORES = frozenset("append extend insert add appendleft put put_nowait update setdefault push".split())
# Calls that take a value to print or log it and keep no tensor alive that a backward could use.
LOGGING_METHODS = frozenset(
    "info debug warning warn error exception critical log log_dict add_scalar add_scalars add_histogram "
    "set_postfix set_description write print".split()
)
NO_GRAD_CONTEXTS = ("torch.no_grad", "torch.inference_mode", "torch.enable_grad")

TORCH_FACTORIES = frozenset(
    "zeros ones empty rand randn randint full eye arange linspace logspace tensor as_tensor from_numpy "
    "zeros_like ones_like empty_like rand_like randn_like full_like randint_like randperm scalar_tensor "
    "normal bernoulli multinomial device Generator manual_seed get_default_dtype".split()
)


# --------------------------------------------------------------------------------------------
# What an expression reads


@dataclass
class Reads:
    """The names an expression's value may take autograd history from."""

    keys: Set[str] = field(default_factory=set)
    opaque: bool = False  # calls something unknown (a module, a helper): may create a graph
    kind: Optional[str] = None  # INERT: no history whatever it reads; LEAF: a new leaf
    # Capitalised callees (`Net(cfg)`, but also `G(z)` for a generator instance): INERT holds only
    # when each of them turns out to be a class rather than a variable of the function.
    ctors: Set[str] = field(default_factory=set)
    # Names passed to a library function (`utils.extract(model, x)`): if one is a module the function
    # may run its forward, so the result may carry a graph.
    object_args: Set[str] = field(default_factory=set)
    # Receivers of methods the analysis does not know (`parser.parse_args()`): opaque unless the
    # receiver is an object of a library class (not a module that could run a forward).
    receivers: Set[str] = field(default_factory=set)

    def add(self, other: "Reads") -> "Reads":
        """Combine with another operand: history-free only when both are."""
        self.kind = INERT if self.kind == INERT and other.kind == INERT else None
        self.keys |= other.keys
        self.opaque = self.opaque or other.opaque
        self.ctors |= other.ctors
        self.object_args |= other.object_args
        self.receivers |= other.receivers
        return self

    def copy(self) -> "Reads":
        return Reads(
            set(self.keys), self.opaque, self.kind, set(self.ctors), set(self.object_args), set(self.receivers)
        )


def key_of(expr: cst.BaseExpression) -> Optional[str]:
    """The variable an expression names: `x` -> "x"; `self.h` -> "self.h"; `args.lr` -> "args"."""
    text = dotted(expr)
    if text is None:
        return None
    return text if text.startswith("self.") else text.split(".")[0]


class ReadCollector:
    """Computes `Reads` of expressions in one module (it needs the imports to know torch)."""

    def __init__(
        self,
        imports: ImportMap,
        detaching: FrozenSet[str] = frozenset(),
        pure: Optional[Dict[str, FrozenSet[str]]] = None,
    ) -> None:
        self.imports = imports
        self.detaching = detaching  # functions of this module whose results never carry a graph
        # Functions of this module that call nothing unknown: name -> module names they read.
        self.pure: Dict[str, FrozenSet[str]] = pure or {}
        # Names holding instances of this module's classes that keep tensors on `self` between
        # calls (`out, self.hidden = self.lstm(x, self.hidden)`): every call reads their state.
        self.stateful: FrozenSet[str] = frozenset()
        # Names holding objects built from tensors (`dist = Categorical(logits=logits)`): a method
        # of one reads the object (`helpers.tensor_holders`).
        self.holders: FrozenSet[str] = frozenset()
        # Builtin names the module binds itself (`def set_input(self, input)`): variables there.
        self.shadowed: FrozenSet[str] = frozenset()
        # (attribute names, global names) filled with values that may carry history: a method
        # of one (`self.memory.sample(n)`) gives back what was stored, so it reads the store.
        self.stores: Tuple[FrozenSet[str], FrozenSet[str]] = (frozenset(), frozenset())
        self._memo: Dict[int, Tuple[cst.CSTNode, Reads]] = {}

    def reads(self, expr: Optional[cst.BaseExpression]) -> Reads:
        """What `expr` reads (a fresh object: callers may combine it)."""
        if expr is None:
            return Reads()
        known = self._memo.get(id(expr))
        if known is None or known[0] is not expr:
            try:
                found = self._reads(expr)
            except RecursionError:
                found = Reads(opaque=True)
            known = (expr, found)
            self._memo[id(expr)] = known
        return known[1].copy()

    def forget(self) -> None:
        """Drop remembered answers (after `stateful` or `stores` change)."""
        self._memo.clear()

    def _name(self, name: str) -> Reads:
        if name in ("True", "False", "None") or name in self.imports.aliases:
            return Reads()
        if name in BUILTINS and name not in self.shadowed:
            return Reads()
        return Reads(keys={name})

    def _reads(self, expr: cst.BaseExpression) -> Reads:
        if isinstance(
            expr,
            (cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString, cst.ConcatenatedString, cst.FormattedString),
        ):
            return Reads(kind=INERT)
        if isinstance(expr, cst.Name):
            return self._name(expr.value)
        if isinstance(expr, cst.Attribute):
            if expr.attr.value == "indices" and self._indexed_call(expr.value):
                return Reads(kind=INERT)  # `x.topk(k).indices`: integers, no history
            if expr.attr.value in CUT_ATTRIBUTES and not self._own_store(expr):
                return Reads(kind=INERT)
            key = key_of(expr)
            if key is not None:
                head = key.split(".")[0]
                if head in self.imports.aliases:
                    return Reads()
                text = dotted(expr) or key
                if text != key:
                    # `policy.saved_log_probs`: the object, and the attribute (which a module
                    # may have filled with tensors of earlier graphs).
                    return Reads(keys={key, text})
                return Reads(keys={key})
            return self._reads(expr.value)
        if isinstance(expr, cst.Subscript):
            if self._index_output(expr):
                return Reads(kind=INERT)
            return self._reads(expr.value)
        if isinstance(expr, (cst.Comparison, cst.Lambda)):
            return Reads(kind=INERT)
        if isinstance(expr, cst.UnaryOperation):
            if isinstance(expr.operator, cst.Not):
                return Reads(kind=INERT)
            return self._reads(expr.expression)
        if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Modulo):
            if isinstance(expr.left, (cst.SimpleString, cst.ConcatenatedString)):
                return Reads(kind=INERT)  # `"epoch %d" % (epoch,)`: a string
        if isinstance(expr, (cst.BinaryOperation, cst.BooleanOperation)):
            return self._reads(expr.left).add(self._reads(expr.right))
        if isinstance(expr, cst.IfExp):
            return self._reads(expr.body).add(self._reads(expr.orelse))
        if isinstance(expr, (cst.Tuple, cst.List, cst.Set, cst.Dict)):
            parts = [self._reads(element.value) for element in expr.elements]
            out = Reads(kind=INERT)
            for part in parts:
                out.add(part)
            if not parts:
                out.kind = INERT
            return out
        if isinstance(expr, (cst.Await, cst.StarredElement)):
            return self._reads(expr.expression if isinstance(expr, cst.Await) else expr.value)
        if isinstance(expr, cst.NamedExpr):
            return self._reads(expr.value)
        if isinstance(expr, cst.Call):
            return self._call(expr)
        if isinstance(expr, (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)):
            return self._comprehension(expr)
        # Anything else (yield expressions...): every name in it, and assume the worst.
        return Reads(keys=set(self._all_names(expr)), opaque=True)

    def _all_names(self, node: cst.CSTNode) -> Iterator[str]:
        for name in names_in(node):
            if name not in self.imports.aliases and name not in BUILTINS:
                yield name

    def _comprehension(self, expr) -> Reads:
        """What the elements are made of: the element expression and the iterables."""
        bound: Set[str] = set()
        out = Reads()
        node = expr.for_in
        while node is not None:
            bound |= set(bound_names(node.target))
            out.add(self._reads(node.iter))
            node = node.inner_for_in
        element = self._reads(expr.value if isinstance(expr, cst.DictComp) else expr.elt)
        if element.kind == INERT and not element.ctors:
            return Reads(kind=INERT)  # `tuple(h.detach() for h in hidden)`
        out.add(element)
        out.keys -= bound
        return out

    def _args(self, call: cst.Call, skip_keywords: Iterable[str] = ()) -> Reads:
        out = Reads()
        for arg in call.args:
            if arg.keyword is not None and arg.keyword.value in ("device", "dtype", "non_blocking", *skip_keywords):
                continue
            out.add(self._reads(arg.value))
        return out

    def _pure(self, call: cst.Call, skip: Optional[cst.Arg] = None) -> Reads:
        """A function of its arguments only (but `skip`): no history when none of them has any."""
        out = Reads()
        kinds = []
        for arg in call.args:
            if arg.keyword is not None and arg.keyword.value in ("device", "dtype", "non_blocking"):
                continue
            if arg is skip:
                continue
            part = self._reads(arg.value)
            kinds.append(part.kind)
            out.add(part)
        if kinds and all(kind == INERT for kind in kinds):
            # Constructor arguments stay attached in case the "class" is really a variable.
            return Reads(keys=out.keys if out.ctors else set(), kind=INERT, ctors=out.ctors)
        return out

    def _call(self, call: cst.Call) -> Reads:
        func = call.func
        qualified = self.imports.resolve(func)
        if qualified is not None:
            head = qualified.split(".")[0]
            if head == "torch":
                return self._torch_call(qualified, call)
            if isinstance(func, cst.Name) and func.value in BUILTINS and func.value not in self._shadowed():
                if func.value in CUT_BUILTINS or func.value in FETCH_BUILTINS:
                    return Reads(kind=INERT)
                return self._pure(call)  # list/zip/min/sum...: a pass-through of their arguments
        if self.detaching and self._detaching_call(func):
            return Reads(kind=INERT)
        if isinstance(func, cst.Name) and func.value in self.pure:
            # `batchify(data, 20)`, `get_batch(source, i)`: a function of its arguments (and the
            # module-level names it reads).
            out = self._pure(call)
            free = self.pure[func.value]
            if free:
                out.kind = None if out.kind == INERT and not out.ctors else out.kind
                out.keys |= set(free)
            return out
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            if method in CUT_METHODS:
                return Reads(kind=INERT)
            if method in LEAF_METHODS:
                out = self._reads(func.value)
                out.kind = LEAF if not out.opaque else None
                return out
            if method in RECEIVER_METHODS:
                return self._reads(func.value)
            if method in DATA_METHODS:
                return self._reads(func.value).add(self._args(call))
            last = method
        elif isinstance(func, cst.Name):
            last = func.value
        else:
            last = ""
        library = self._library_call(func, last)
        if library:
            # A function of an imported library (`Image.open(path)`, `np.load(f)`,
            # `T.Compose([...])(img)`, `Image.open(p).convert("RGB")`): a function of its arguments.
            out = self._pure(call)
            out.object_args = set(out.keys)
            return out
        if last[:1].isupper() and self._constructor_like(func):
            # A constructor (a module, a loader, a distribution): an object made of its arguments,
            # unless the capitalised name turns out to be a variable (`G(z)`).
            out = self._pure(call)
            out.ctors.add(key_of(func) or last)
            out.keys |= set(self._args(call).keys)
            return out
        # An unknown callable (a module's forward, a criterion, a helper): its arguments flow in and
        # it may create a graph of its own.
        out = self._args(call)
        callee = key_of(func)  # `model(x)`, `self.model(x)`, `model.forward(x)`
        if callee is not None and callee in self.stateful:
            out.keys.add(f"<state:{callee}>")  # never assigned here: carried from call to call
        receiver = key_of(func.value) if isinstance(func, cst.Attribute) else None
        store = self._store_read(func.value) if isinstance(func, cst.Attribute) else None
        if store is not None:
            out.keys.add(store)
        if receiver is not None and not receiver.startswith("self.") and receiver != "self":
            out.receivers.add(receiver)  # decided per scope: a library object's method, or opaque
            if receiver in self.holders:
                out.keys.add(receiver)  # `dist.log_prob(a)`: computed from what `dist` was built of
        else:
            out.opaque = True
        return out

    def _index_output(self, expr: cst.Subscript) -> bool:
        """`torch.topk(x, k)[1]`, `x.max(dim=1)[1]`, `x.sort()[1]`: the indices a (values, indices)
        reduction returns are integer tensors, which never carry history."""
        if len(expr.slice) != 1:
            return False
        index = expr.slice[0].slice
        if not (isinstance(index, cst.Index) and isinstance(index.value, cst.Integer) and index.value.value == "1"):
            return False
        return self._indexed_call(expr.value)

    def _indexed_call(self, value: cst.BaseExpression) -> bool:
        if not isinstance(value, cst.Call):
            return False
        func = value.func
        qualified = self.imports.resolve(func) or ""
        parts = qualified.split(".")
        if parts[0] == "torch" and len(parts) == 2 and parts[-1] in INDEXED_REDUCTIONS:
            return _given_dim(value, parts[-1], 1)
        if isinstance(func, cst.Attribute) and func.attr.value in INDEXED_REDUCTIONS:
            if (dotted(func.value) or "").split(".")[0] in self.imports.aliases:
                return False
            return _given_dim(value, func.attr.value, 0)
        return False

    def _own_store(self, expr: cst.Attribute) -> bool:
        """`self.data` where the file fills `data` with values: a buffer, not a tensor's `.data`."""
        value = expr.value
        return isinstance(value, cst.Name) and value.value == "self" and expr.attr.value in self.stores[0]

    def _store_read(self, receiver: cst.BaseExpression) -> Optional[str]:
        """The key of a history store a method is called on (`self.memory` in
        `self.memory.sample(n)`), else None."""
        while isinstance(receiver, cst.Subscript):
            receiver = receiver.value
        text = dotted(receiver)
        if text is None:
            return None
        attributes, names = self.stores
        parts = text.split(".")
        if len(parts) > 1 and parts[1] in attributes:
            return ".".join(parts[:2])
        if len(parts) == 1 and parts[0] in names:
            return parts[0]
        return None

    def _shadowed(self) -> Set[str]:
        return set(self.shadowed)

    def _constructor_like(self, func: cst.BaseExpression) -> bool:
        """`Net(...)`, `nn.Linear(...)`, `models.Generator(...)`: a class reached by name or through an
        import. `self.G(z)` or `trainer.D(x)` call attributes of an object instead."""
        if isinstance(func, cst.Name):
            return True
        text = dotted(func)
        return text is not None and text.split(".")[0] in self.imports.aliases

    def _imported(self, expr: cst.BaseExpression) -> Optional[str]:
        """Qualified name when `expr` is reached through an import (not torch's own), else None."""
        text = dotted(expr)
        if text is None or text.split(".")[0] not in self.imports.aliases:
            return None
        qualified = self.imports.resolve(expr)
        if qualified is None or qualified.split(".")[0] == "torch":
            return None
        return qualified

    def _library_call(self, func: cst.BaseExpression, last: str) -> bool:
        if isinstance(func, (cst.Name, cst.Attribute)):
            if last[:1].isupper():
                return False  # a class: handled as a constructor
            if self._imported(func) is not None:
                return True
            if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Call):
                # A method of a value made from constants only: `Image.open("a.jpg").convert("RGB")`.
                receiver = self._reads(func.value)
                return receiver.kind == INERT and not receiver.keys and not receiver.ctors
            return False
        if isinstance(func, cst.Call):
            # `T.Compose([...])(img)`: a callable object built by an imported class outside torch.nn.
            inner = self._imported(func.func)
            return inner is not None and not inner.split(".")[-1][:1].islower()
        return False

    def _detaching_call(self, func: cst.BaseExpression) -> bool:
        """`repackage_hidden(h)` / `self.detach_state(s)`: a helper here that only returns detached values."""
        if isinstance(func, cst.Name):
            return func.value in self.detaching
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            return func.attr.value in self.detaching
        return False

    def _torch_call(self, qualified: str, call: cst.Call) -> Reads:
        parts = qualified.split(".")
        last = parts[-1]
        if qualified in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
            return Reads(kind=LEAF)
        if len(parts) == 2 and last in TORCH_FACTORIES:
            requires = keyword_arg(call, "requires_grad")
            if requires is not None and not is_false(requires):
                return Reads(kind=LEAF)
            return Reads(kind=INERT)
        if qualified == "torch.autograd.grad":
            create = keyword_arg(call, "create_graph")
            if create is None or is_false(create):
                return Reads(kind=INERT)  # plain gradients carry no graph
            return self._pure(call)
        if qualified in CHECKPOINTS:
            # `checkpoint(trunk, x)`: `trunk(x)`, its activations recomputed in the backward. What
            # calling the function gives: the other arguments flow in, and it may make a graph of
            # its own (the function is the callee, not a value read).
            out = self._args(call.with_changes(args=call.args[1:]))
            out.opaque = True
            return out
        if qualified in INDEX_TARGET_LOSSES:
            # Class indices: an integer target never carries history, and no gradient flows to it.
            return self._pure(call, skip=_argument(call, 1, "target"))
        # torch.nn.Linear(3, 4), torch.device(...), Normal(mu, sigma): objects made of their arguments.
        return self._pure(call)


# Activation checkpointing: calls its first argument with the rest
CHECKPOINTS = frozenset(("torch.utils.checkpoint.checkpoint", "torch.utils.checkpoint.checkpoint_sequential"))


def _given_dim(call: cst.Call, name: str, position: int) -> bool:
    """Does this reduction return (values, indices)? `max`/`min`/`median` only when given a
    dimension (an integer, not another tensor: `torch.max(a, b)` is elementwise)."""
    if name not in ("max", "min", "median", "nanmedian"):
        return True
    if keyword_arg(call, "dim") is not None:
        return True
    positional = [a.value for a in call.args if a.keyword is None]
    if len(positional) <= position:
        return False
    dim = positional[position]
    if isinstance(dim, cst.UnaryOperation):
        dim = dim.expression
    return isinstance(dim, cst.Integer)


def _argument(call: cst.Call, position: int, name: str) -> Optional[cst.Arg]:
    """The argument filling parameter `name` (keyword, or the `position`-th positional)."""
    positional = [a for a in call.args if a.keyword is None]
    if any(a.star for a in call.args):
        return None
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg
    return positional[position] if len(positional) > position else None


def keyword_arg(call: cst.Call, name: str) -> Optional[cst.BaseExpression]:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg.value
    return None


def is_false(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value in ("False", "None")


def is_true(expr: Optional[cst.BaseExpression]) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "True"


def names_in(node: cst.CSTNode) -> List[str]:
    """Every variable an expression or statement mentions (`self.x` chains as one key)."""
    out: List[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Name):
            out.append(current.value)
            continue
        if isinstance(current, cst.Attribute):
            key = key_of(current)
            if key is not None:
                out.append(key)
            else:
                stack.append(current.value)  # not the attribute's own name
            continue
        if isinstance(current, cst.Arg):
            stack.append(current.value)  # not the keyword's name
            continue
        stack.extend(children(current))
    return out


def bound_names(target: cst.BaseExpression) -> Iterator[str]:
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from bound_names(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from bound_names(target.value)


def target_keys(target: cst.BaseExpression) -> Iterator[str]:
    """Variables bound by an assignment target (`self.x` chains included)."""
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, cst.Attribute):
        key = dotted(target)
        if key is not None and key.startswith("self."):
            yield key
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from target_keys(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from target_keys(target.value)


def stores_outside(target: cst.BaseExpression) -> bool:
    """Does assigning to `target` put the value somewhere outside the function's locals?"""
    if isinstance(target, (cst.Attribute, cst.Subscript)):
        return True
    if isinstance(target, (cst.Tuple, cst.List)):
        return any(stores_outside(el.value) for el in target.elements)
    if isinstance(target, cst.StarredElement):
        return stores_outside(target.value)
    return False


def reads_around(node: cst.CSTNode) -> Set[str]:
    """Names read by code, with nested scopes contributing only their free names."""
    out: Set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        kind = type(current)  # exact types: LibCST's node classes are final (isinstance is slower)
        if kind in _NESTED_TYPES and current is not node:
            out |= free_names(current)
            continue
        if kind is cst.Name:
            out.add(current.value)  # type: ignore[attr-defined]
            continue
        if kind is cst.Attribute:
            key = key_of(current)  # type: ignore[arg-type]
            if key is not None:
                out.add(key)
                out.add(key.split(".")[0])
            else:
                stack.append(current.value)  # type: ignore[attr-defined]
            continue
        if kind is cst.Arg:
            stack.append(current.value)  # type: ignore[attr-defined]
            continue
        stack.extend(children(current))
    return out


_NESTED_TYPES = frozenset(SCOPES + COMPREHENSIONS)


def free_names(node: cst.CSTNode) -> Set[str]:
    """Free variables of a nested scope (its own parameters and assignments removed)."""
    from gradlint.analysis.bindings import assigned_keys

    if isinstance(node, cst.FunctionDef):
        outside: Set[str] = set()
        for default in param_defaults(node):
            outside |= reads_around(default)  # evaluated where the function is defined
        local = set(param_names(node)) | assigned_keys(node.body)
        return outside | (reads_around(node.body) - local)
    if isinstance(node, cst.Lambda):
        return reads_around(node.body) - {p.name.value for p in node.params.params}
    if isinstance(node, cst.ClassDef):
        return reads_around(node.body) - assigned_keys(node.body)
    if isinstance(node, COMPREHENSIONS):
        outside = set()
        inside: Set[str] = set()
        bound: Set[str] = set()
        part: Optional[cst.CompFor] = node.for_in
        first = True
        while part is not None:
            bound |= set(bound_names(part.target))
            if first:
                outside |= reads_around(part.iter)  # the first iterable is evaluated outside
                first = False
            else:
                inside |= reads_around(part.iter)
            for condition in part.ifs:
                inside |= reads_around(condition.test)
            part = part.inner_for_in
        if isinstance(node, cst.DictComp):
            inside |= reads_around(node.key) | reads_around(node.value)
        else:
            inside |= reads_around(node.elt)
        return outside | (inside - bound)
    return reads_around(node)


def param_defaults(fn: cst.FunctionDef) -> Iterator[cst.BaseExpression]:
    params = fn.params
    for param in list(params.posonly_params) + list(params.params) + list(params.kwonly_params):
        if param.default is not None:
            yield param.default


def param_names(fn: cst.FunctionDef) -> List[str]:
    params = fn.params
    names = [p.name.value for p in list(params.posonly_params) + list(params.params) + list(params.kwonly_params)]
    for star in (params.star_arg, params.star_kwarg):
        if isinstance(star, cst.Param):
            names.append(star.name.value)
    return names

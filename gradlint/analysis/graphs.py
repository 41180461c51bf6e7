"""Which later backward can walk a graph kept by `retain_graph=True`? (The fact GL002 reads.)

`retain_graph=True` keeps a graph's saved tensors after its backward so that *another* backward can
walk it again. It is unnecessary when no later backward can reach that graph. This module proves
that, or gives up (and the rule stays silent):

1. The graph must not escape the function: the root or anything computed from or into it is not
   returned, yielded, stored on an attribute or in a container, declared global/nonlocal, captured
   by a nested function, or passed (after the backward) to a call we do not know.
2. No backward that runs later in the same pass (later statements of the block and of enclosing
   blocks, `except`/`finally`, loop `else`) starts from a tensor computed, by def-use inside the
   function, from a tensor of the retained graph.
3. When the backward is inside a loop, the next iteration must rebuild its losses from fresh values:
   every name the loop body reads before assigning it must be a constant, a factory tensor, the
   loop's batch, a detached value, or a module/function used only as a callee. A hidden state
   carried across iterations, or a tensor computed before the loop, may link the graphs.

Def-use is flow-insensitive inside a function (every definition of a name counts), which can only
make the analysis find more links, never fewer: it errs towards silence.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, Iterator, List, Optional, Set, Tuple, Union

import libcst as cst

from gradlint.analysis.backward import BackwardCall, backward_call, unknown_arguments
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.tree import COMPREHENSIONS, SCOPES, SUITES, children, walk

INERT = "inert"  # no autograd history and no requires_grad: links no graphs
LEAF = "leaf"  # a tensor that requires grad but has no history (a parameter-like leaf)
GRAPH = "graph"  # may carry autograd history
UNKNOWN = "unknown"  # defined outside the function (parameters, unknown globals)

_BUILTINS = frozenset(dir(builtins))
# Builtins whose result carries no graph whatever they are given.
_CUT_BUILTINS = frozenset(
    "len int float bool str repr range isinstance issubclass type print hash id format callable hasattr "
    "round divmod ord chr bin hex oct vars dir open input".split()
)
# Attribute reads that give values with no autograd history.
_CUT_ATTRIBUTES = frozenset(
    "shape dtype device grad data requires_grad is_leaf ndim grad_fn is_cuda layout names".split()
)
# Tensor methods whose result has no autograd history.
_CUT_METHODS = frozenset(
    "detach item tolist numpy size dim numel nelement element_size argmax argmin argsort eq ne gt lt ge le "
    "isnan isinf isfinite nonzero long int bool byte short char new_zeros new_ones new_empty new_full "
    "new_tensor data_ptr stride is_contiguous storage_offset equal allclose sign floor_divide "
    "get_device untyped_storage".split()
)
# Tensor methods whose result is computed from the receiver only (the arguments are sizes, dims,
# devices or dtypes).
_RECEIVER_METHODS = frozenset(
    "to cuda cpu float double half bfloat16 type view reshape expand repeat permute transpose t flatten "
    "unflatten squeeze unsqueeze narrow chunk split unbind contiguous clone view_as reshape_as expand_as "
    "type_as sum mean prod norm max min amax amin std var logsumexp median nansum nanmean softmax "
    "log_softmax exp log log1p expm1 abs neg sqrt rsqrt square sigmoid tanh relu cumsum cumprod flip roll "
    "diagonal diag triu tril trace T mT movedim squeeze_ unsqueeze_ repeat_interleave".split()
)
# Tensor methods whose result depends on the receiver and the tensor arguments.
_DATA_METHODS = frozenset(
    "add sub mul div pow matmul mm bmm mv dot true_divide multiply subtract divide add_ sub_ mul_ div_ "
    "pow_ clamp clamp_ clamp_min clamp_max clip masked_fill masked_fill_ masked_select where gather "
    "index_select scatter scatter_add lerp addcmul addcdiv maximum minimum copy_ fill_ zero_ "
    "__getitem__ index_put".split()
)
_LEAF_METHODS = frozenset({"requires_grad_"})
# Methods only modules, optimizers and the like have: their receiver is not a tensor.
_OBJECT_METHODS = frozenset(
    "parameters named_parameters train eval state_dict load_state_dict modules named_modules children "
    "zero_grad buffers named_buffers apply forward register_forward_hook register_full_backward_hook "
    "get_submodule add_module step".split()
)
# Builtins that fetch the next element of a data source, like a loop target.
_FETCH_BUILTINS = frozenset({"next", "iter"})
_CONTAINER_STORES = frozenset("append extend insert add appendleft put put_nowait update setdefault push".split())
# Calls that take a value to print or log it and keep no tensor alive that a backward could use.
_LOGGING_METHODS = frozenset(
    "info debug warning warn error exception critical log log_dict add_scalar add_scalars add_histogram "
    "set_postfix set_description write print".split()
)
_NO_GRAD_CONTEXTS = ("torch.no_grad", "torch.inference_mode", "torch.enable_grad")

_TORCH_FACTORIES = frozenset(
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

    def _name(self, name: str) -> Reads:
        if name in ("True", "False", "None") or name in self.imports.aliases:
            return Reads()
        if name in _BUILTINS:
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
            if expr.attr.value in _CUT_ATTRIBUTES:
                return Reads(kind=INERT)
            key = key_of(expr)
            if key is not None:
                head = key.split(".")[0]
                if head in self.imports.aliases:
                    return Reads()
                return Reads(keys={key})
            return self._reads(expr.value)
        if isinstance(expr, cst.Subscript):
            return self._reads(expr.value)
        if isinstance(expr, (cst.Comparison, cst.Lambda)):
            return Reads(kind=INERT)
        if isinstance(expr, cst.UnaryOperation):
            if isinstance(expr.operator, cst.Not):
                return Reads(kind=INERT)
            return self._reads(expr.expression)
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
            if name not in self.imports.aliases and name not in _BUILTINS:
                yield name

    def _comprehension(self, expr) -> Reads:
        """What the elements are made of: the element expression and the iterables."""
        bound: Set[str] = set()
        out = Reads()
        node = expr.for_in
        while node is not None:
            bound |= set(_bound_names(node.target))
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

    def _pure(self, call: cst.Call) -> Reads:
        """A function of its arguments only: no history when none of them has any."""
        out = Reads()
        kinds = []
        for arg in call.args:
            if arg.keyword is not None and arg.keyword.value in ("device", "dtype", "non_blocking"):
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
            if isinstance(func, cst.Name) and func.value in _BUILTINS and func.value not in self._shadowed():
                if func.value in _CUT_BUILTINS or func.value in _FETCH_BUILTINS:
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
            if method in _CUT_METHODS:
                return Reads(kind=INERT)
            if method in _LEAF_METHODS:
                out = self._reads(func.value)
                out.kind = LEAF if not out.opaque else None
                return out
            if method in _RECEIVER_METHODS:
                return self._reads(func.value)
            if method in _DATA_METHODS:
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
        if receiver is not None and not receiver.startswith("self.") and receiver != "self":
            out.receivers.add(receiver)  # decided per scope: a library object's method, or opaque
        else:
            out.opaque = True
        return out

    def _shadowed(self) -> Set[str]:
        return set()

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
        if len(parts) == 2 and last in _TORCH_FACTORIES:
            requires = _keyword(call, "requires_grad")
            if requires is not None and not _is_false(requires):
                return Reads(kind=LEAF)
            return Reads(kind=INERT)
        if qualified == "torch.autograd.grad":
            create = _keyword(call, "create_graph")
            if create is None or _is_false(create):
                return Reads(kind=INERT)  # plain gradients carry no graph
            return self._pure(call)
        # torch.nn.Linear(3, 4), torch.device(...), Normal(mu, sigma): objects made of their arguments.
        return self._pure(call)


def _keyword(call: cst.Call, name: str) -> Optional[cst.BaseExpression]:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg.value
    return None


def _is_false(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value in ("False", "None")


def _is_true(expr: Optional[cst.BaseExpression]) -> bool:
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


def _bound_names(target: cst.BaseExpression) -> Iterator[str]:
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from _bound_names(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from _bound_names(target.value)


def _target_keys(target: cst.BaseExpression) -> Iterator[str]:
    """Variables bound by an assignment target (`self.x` chains included)."""
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, cst.Attribute):
        key = dotted(target)
        if key is not None and key.startswith("self."):
            yield key
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from _target_keys(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from _target_keys(target.value)


def _stores(target: cst.BaseExpression) -> bool:
    """Does assigning to `target` put the value somewhere outside the function's locals?"""
    if isinstance(target, (cst.Attribute, cst.Subscript)):
        return True
    if isinstance(target, (cst.Tuple, cst.List)):
        return any(_stores(el.value) for el in target.elements)
    if isinstance(target, cst.StarredElement):
        return _stores(target.value)
    return False


# --------------------------------------------------------------------------------------------
# One function (or the module body) indexed for the questions above


@dataclass(repr=False)
class Definition:
    key: str
    reads: Reads
    node: cst.CSTNode
    no_grad: bool = False
    loop_target: Optional[cst.For] = None  # set for `for <key> in ...` definitions


@dataclass
class Escape:
    """A place where a value may leave the function's locals."""

    kind: str  # "return", "store", "container", "global", "closure", "call"
    reads: Set[str]
    statement: cst.CSTNode
    container: Optional[str] = None  # for "container": the name of the list/dict stored into


@dataclass
class Later:
    """A backward-like call: a real backward, a configured helper, or a helper of this module."""

    node: cst.Call
    tensor: Optional[cst.BaseExpression]  # None: unknown root
    roots: Optional[Set[str]] = None  # for helpers: every name passed in
    backward: Optional[BackwardCall] = None


_Block = List[cst.CSTNode]


@dataclass
class _Place:
    parent: Optional[cst.CSTNode]  # the compound statement owning the block, None at the top
    part: str  # "body", "orelse", "handler", "finally"
    block: _Block
    index: int


class Scope:
    """A function body (or the module, or a class body): definitions, uses, statement structure."""

    def __init__(
        self,
        node: cst.CSTNode,
        body: _Block,
        params: List[str],
        analysis: "GraphAnalysis",
        outer: Optional["Scope"],
    ) -> None:
        self.node = node
        self.body = body
        self.params = set(params)
        self.analysis = analysis
        self.outer = outer
        self.defs: Dict[str, List[Definition]] = {}
        self.escapes: List[Escape] = []
        self.places: Dict[cst.CSTNode, _Place] = {}
        self.children: Dict[Optional[cst.CSTNode], List[cst.CSTNode]] = {}
        self.defs_at: Dict[cst.CSTNode, List[Definition]] = {}  # statement -> definitions it makes
        self.later_calls: Dict[cst.CSTNode, List[Later]] = {}  # statement -> backward-like calls in it
        self.container_collections: Set[str] = set()  # names appended tensors in this scope
        self.nested_scopes: List[cst.CSTNode] = []
        self._classes: Optional[Dict[str, str]] = None
        self._reaching: Optional[ReachingDefinitions] = None
        self._carried: Dict[cst.CSTNode, Set[str]] = {}
        self._library: Dict[str, bool] = {}
        self._index_block(body, None, "body", no_grad=False, loop=None)
        self.objects = _object_names(body)  # names used as modules/functions: never tensors

    # -- indexing ------------------------------------------------------------------------------
    def _index_block(self, block: _Block, parent, part: str, no_grad: bool, loop) -> None:
        for index, stmt in enumerate(block):
            self.places[stmt] = _Place(parent, part, block, index)
            self.children.setdefault(parent, []).append(stmt)
            self._index_statement(stmt, no_grad, loop)

    def _index_statement(self, stmt: cst.CSTNode, no_grad: bool, loop) -> None:
        reads = self.analysis.reads
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                self._index_small(small, stmt, no_grad)
            self._note_calls(stmt, stmt)
            return
        if isinstance(stmt, cst.BaseSmallStatement):
            self._index_small(stmt, stmt, no_grad)
            self._note_calls(stmt, stmt)
            return
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            self._define(stmt.name.value, Reads(kind=INERT), stmt, no_grad)
            self.nested_scopes.append(stmt)
            free = self._free_reads(stmt)
            if free:
                self.escapes.append(Escape("closure", free, stmt))
            return
        if isinstance(stmt, cst.If):
            self._note_calls(stmt.test, stmt)
            self._index_block(list(_suite(stmt.body)), stmt, "body", no_grad, loop)
            if isinstance(stmt.orelse, cst.If):
                self._index_block([stmt.orelse], stmt, "orelse", no_grad, loop)
            elif stmt.orelse is not None:
                self._index_block(list(_suite(stmt.orelse.body)), stmt, "orelse", no_grad, loop)
            return
        if isinstance(stmt, cst.For):
            self._note_calls(stmt.iter, stmt)
            iter_reads = reads.reads(stmt.iter)
            for key in _target_keys(stmt.target):
                self._define(key, iter_reads, stmt, no_grad, loop_target=stmt)
            self._index_block(list(_suite(stmt.body)), stmt, "body", no_grad, stmt)
            if stmt.orelse is not None:
                self._index_block(list(_suite(stmt.orelse.body)), stmt, "orelse", no_grad, loop)
            return
        if isinstance(stmt, cst.While):
            self._note_calls(stmt.test, stmt)
            self._index_block(list(_suite(stmt.body)), stmt, "body", no_grad, stmt)
            if stmt.orelse is not None:
                self._index_block(list(_suite(stmt.orelse.body)), stmt, "orelse", no_grad, loop)
            return
        if isinstance(stmt, cst.With):
            inner_no_grad = no_grad
            for item in stmt.items:
                self._note_calls(item.item, stmt)
                target = item.item.func if isinstance(item.item, cst.Call) else item.item
                qualified = self.analysis.imports.resolve(target)
                if qualified in ("torch.no_grad", "torch.inference_mode"):
                    inner_no_grad = True
                elif qualified == "torch.set_grad_enabled" and isinstance(item.item, cst.Call):
                    if item.item.args and _is_false(item.item.args[0].value):
                        inner_no_grad = True
                if item.asname is not None:
                    for key in _target_keys(item.asname.name):
                        self._define(key, reads.reads(item.item), stmt, no_grad)
            self._index_block(list(_suite(stmt.body)), stmt, "body", inner_no_grad, loop)
            return
        if isinstance(stmt, (cst.Try, getattr(cst, "TryStar", cst.Try))):
            self._index_block(list(_suite(stmt.body)), stmt, "body", no_grad, loop)
            for handler in stmt.handlers:
                if handler.name is not None:
                    for key in _target_keys(handler.name.name):
                        self._define(key, Reads(kind=INERT), handler, no_grad)
                self._index_block(list(_suite(handler.body)), stmt, "handler", no_grad, loop)
            if stmt.orelse is not None:
                self._index_block(list(_suite(stmt.orelse.body)), stmt, "orelse", no_grad, loop)
            if stmt.finalbody is not None:
                self._index_block(list(_suite(stmt.finalbody.body)), stmt, "finally", no_grad, loop)
            return
        # match and anything newer: index its blocks as plain blocks, every name assumed linked.
        for block in _blocks_of(stmt):
            self._index_block(block, stmt, "body", no_grad, loop)
        self._note_calls_shallow(stmt)

    def _index_small(self, small: cst.BaseSmallStatement, stmt: cst.CSTNode, no_grad: bool) -> None:
        reads = self.analysis.reads
        if isinstance(small, cst.Assign):
            value = reads.reads(small.value)
            for target in small.targets:
                keys = list(_target_keys(target.target))
                if len(keys) > 1 and not isinstance(small.value, (cst.Tuple, cst.List)):
                    # `a, b = model(x)`: both come from one call and share its graph.
                    shared = f"<unpacked@{len(self.defs)}:{keys[0]}>"
                    self._define(shared, value, small, no_grad)
                    for key in keys:
                        self._define(key, Reads(keys={shared}), small, no_grad)
                    continue
                for key in keys:
                    self._define(key, value, small, no_grad)
                if _stores(target.target):
                    self.escapes.append(Escape("store", set(value.keys), stmt))
            self._note_walrus(small.value, small, no_grad)
        elif isinstance(small, cst.AnnAssign):
            if small.value is not None:
                value = reads.reads(small.value)
                for key in _target_keys(small.target):
                    self._define(key, value, small, no_grad)
                if _stores(small.target):
                    self.escapes.append(Escape("store", set(value.keys), stmt))
        elif isinstance(small, cst.AugAssign):
            value = reads.reads(small.value)
            keys = list(_target_keys(small.target))
            for key in keys:
                combined = value.copy()
                combined.keys.add(key)
                combined.kind = None  # `total += x` keeps what `total` held
                self._define(key, combined, small, no_grad)
            if _stores(small.target):
                self.escapes.append(Escape("store", set(value.keys), stmt))
        elif isinstance(small, (cst.Return,)):
            if small.value is not None:
                self.escapes.append(Escape("return", reads.reads(small.value).keys, stmt))
        elif isinstance(small, cst.Expr):
            value = small.value
            if isinstance(value, (cst.Yield,)):
                inner = value.value
                if isinstance(inner, cst.From):
                    inner = inner.item
                self.escapes.append(Escape("return", reads.reads(inner).keys if inner is not None else set(), stmt))
            elif isinstance(value, cst.Call):
                self._index_expression_call(value, small, stmt, no_grad)
            self._note_walrus(value, small, no_grad)
        elif isinstance(small, (cst.Global, cst.Nonlocal)):
            self.escapes.append(Escape("global", {item.name.value for item in small.names}, stmt))
        elif isinstance(small, (cst.Import, cst.ImportFrom)):
            pass  # imported modules are inert
        # Yields inside assignments (`x = yield y`) leave through the generator too.
        for node in _yields(small):
            inner = node.value.item if isinstance(node.value, cst.From) else node.value
            if inner is not None and not (isinstance(small, cst.Expr) and small.value is node):
                self.escapes.append(Escape("return", reads.reads(inner).keys, stmt))

    def _index_expression_call(self, call: cst.Call, small, stmt: cst.CSTNode, no_grad: bool) -> None:
        """A call whose result is dropped: in-place detaches, container stores, opaque consumers."""
        reads = self.analysis.reads
        func = call.func
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            receiver = key_of(func.value)
            if method == "detach_" and receiver is not None:
                self._define(receiver, Reads(kind=INERT), small, no_grad)
                return
            if method == "requires_grad_" and receiver is not None:
                self._define(receiver, Reads(keys={receiver}, kind=LEAF), small, no_grad)
                return
            if method in _CONTAINER_STORES:
                value = reads._args(call)
                self.escapes.append(Escape("container", set(value.keys), stmt, container=receiver))
                if receiver is not None and value.keys:
                    self.container_collections.add(receiver)
                    self._define(receiver, Reads(keys=set(value.keys) | {receiver}), small, no_grad)
                return
            if method in _LOGGING_METHODS:
                return
        if backward_call(call, self.analysis.imports) is not None:
            return
        qualified = self.analysis.imports.resolve(func)
        if qualified is not None and qualified.split(".")[0] == "torch":
            return
        if isinstance(func, cst.Name) and func.value in _BUILTINS:
            return
        self.escapes.append(Escape("call", set(reads._args(call).keys), stmt))

    def _note_walrus(self, expr: cst.BaseExpression, small, no_grad: bool) -> None:
        for node in _walruses(expr):
            for key in _target_keys(node.target):
                self._define(key, self.analysis.reads.reads(node.value), small, no_grad)

    def _define(self, key: str, reads: Reads, node: cst.CSTNode, no_grad: bool, loop_target=None) -> None:
        definition = Definition(key, reads, node, no_grad, loop_target=loop_target)
        self.defs.setdefault(key, []).append(definition)
        self.defs_at.setdefault(node, []).append(definition)

    def _free_reads(self, node: cst.CSTNode) -> Set[str]:
        """Names of this scope that a nested function or class reads (closures keep them alive)."""
        return {n for n in free_names(node) if n in self.defs or n in self.params}

    def _note_calls(self, node: cst.CSTNode, stmt: cst.CSTNode) -> None:
        for call in _calls_outside_nested(node):
            later = self.analysis.later_of(call)
            if later is not None:
                self.later_calls.setdefault(stmt, []).append(later)

    def _note_calls_shallow(self, stmt: cst.CSTNode) -> None:
        self._note_calls(stmt, stmt)

    # -- classification --------------------------------------------------------------------
    def classes(self) -> Dict[str, str]:
        """INERT/LEAF/GRAPH for every name defined here (a greatest fixpoint from INERT)."""
        if self._classes is not None:
            return self._classes
        classes = {key: INERT for key in self.defs}
        self._classes = classes
        changed = True
        rounds = 0
        while changed and rounds < 50:
            changed = False
            rounds += 1
            for key, definitions in self.defs.items():
                if key in self.objects:
                    continue
                new = _join([self._definition_class(d) for d in definitions])
                if new != classes[key]:
                    classes[key] = new
                    changed = True
        return classes

    def class_of(self, key: str) -> str:
        """Class of any name read here, including names from outside the function."""
        if key in self.objects:
            return INERT
        if self._classes is not None and key in self._classes:
            return self._classes[key]
        if key in self.defs:
            return self.classes()[key]
        if key == "self":
            return INERT
        if key in self.params:
            return UNKNOWN
        if self.outer is not None:
            head = key.split(".")[0]
            if head in self.outer.defs and "." not in key:
                return self.outer.class_of(key)
        return UNKNOWN

    def is_instance(self, name: str) -> bool:
        """Is a capitalised callee a variable here (`G = Generator()`), not a class?"""
        if name in self.params:
            return True
        definitions = self.defs.get(name)
        if definitions:
            return any(not isinstance(d.node, cst.ClassDef) for d in definitions)
        if self.outer is not None:
            return self.outer.is_instance(name)
        return False

    def inert_definition(self, definition: Definition) -> bool:
        """Does this definition give a value with no history, whatever it reads?"""
        reads = definition.reads
        if definition.no_grad:
            return True
        return reads.kind == INERT and not any(self.is_instance(c) for c in reads.ctors)

    def _definition_class(self, definition: Definition) -> str:
        classes = [self.class_of(k) for k in definition.reads.keys if k != definition.key]
        return self.definition_class(definition, classes)

    def definition_class(self, definition: Definition, classes: List[str]) -> str:
        """INERT/LEAF/GRAPH of one definition, given the classes of the values it reads."""
        reads = definition.reads
        if definition.no_grad:
            return INERT
        if any(self.is_instance(c) for c in reads.ctors):
            return GRAPH  # `G(z)`: calling a module instance, not constructing a class
        if reads.kind == INERT:
            return INERT
        if definition.loop_target is not None:
            return GRAPH if self._collection_of_tensors(definition.loop_target) else INERT
        if reads.object_args & self.objects:
            return GRAPH  # a module handed to a library function may be run by it
        opaque = reads.opaque or any(not self.library_object(r) for r in reads.receivers)
        if reads.kind == LEAF:
            return LEAF if not opaque and all(c == INERT for c in classes) else GRAPH
        if opaque or any(c != INERT for c in classes):
            return GRAPH
        return INERT

    def library_object(self, key: str) -> bool:
        """Is `key` an object of an imported class outside torch.nn (`argparse.ArgumentParser()`,
        `data.Corpus(path)`, `SummaryWriter()`), whose methods return data rather than graphs?"""
        if key in self._library:
            return self._library[key]
        self._library[key] = False  # cycles: not proven
        definitions = self.defs.get(key)
        if definitions:
            found = all(self._library_definition(d) for d in definitions)
        elif self.outer is not None and key not in self.params:
            found = self.outer.library_object(key)
        else:
            found = False
        self._library[key] = found
        return found

    def _library_definition(self, definition: Definition) -> bool:
        value = getattr(definition.node, "value", None)
        if not isinstance(value, cst.Call) or not isinstance(definition.node, (cst.Assign, cst.AnnAssign)):
            return False
        func = value.func
        while isinstance(func, cst.Attribute) and isinstance(func.value, cst.Call):
            func = func.value.func  # argparse.ArgumentParser(...).parse_args()
        text = dotted(func)
        if text is None or text.split(".")[0] not in self.analysis.imports.aliases:
            return False
        qualified = self.analysis.imports.resolve(func) or ""
        if qualified.startswith("torch.nn") or qualified.startswith("torch.") and not qualified.startswith(
            ("torch.utils.", "torch.optim.", "torch.cuda.amp.", "torch.amp.", "torch.distributions.")
        ):
            return False
        return True

    def _collection_of_tensors(self, loop: cst.For) -> bool:
        """Does `for x in <iter>` walk tensors built in this function (`for loss in losses`)?"""
        return bool(self.collection_keys(loop))

    def collection_keys(self, loop: cst.For) -> Set[str]:
        keys = set()
        iterable = loop.iter
        reads = self.analysis.reads.reads(iterable)
        if isinstance(iterable, (cst.List, cst.Tuple)):
            if any(self._class_or_graph(k) != INERT for k in reads.keys):
                keys |= {k for k in reads.keys if k in self.defs or k in self.params}
                return keys or {"<display>"}
        for key in reads.keys:
            if key in self.container_collections:
                keys.add(key)
                continue
            for definition in self.defs.get(key, ()):
                value = getattr(definition.node, "value", None)
                if isinstance(value, (cst.List, cst.Tuple, cst.ListComp)) and any(
                    self._class_or_graph(k) != INERT for k in definition.reads.keys
                ):
                    keys.add(key)
        return keys

    def _class_or_graph(self, key: str) -> str:
        # Used while classes are being computed: names not settled yet count as linked.
        if self._classes is not None and key in self._classes:
            return self._classes[key]
        return self.class_of(key)

    def reaching(self) -> "ReachingDefinitions":
        """The flow-sensitive def-use graph of this scope (built on first use)."""
        if self._reaching is None:
            self._reaching = ReachingDefinitions(self)
        return self._reaching

    # -- def-use closures ----------------------------------------------------------------------
    def closure(self, keys: Iterable[str]) -> Set[str]:
        """Every name whose value may flow into a value reading `keys`."""
        seen: Set[str] = set()
        todo = list(keys)
        while todo:
            key = todo.pop()
            if key in seen:
                continue
            seen.add(key)
            if key in self.defs and self.class_of(key) in (INERT, LEAF):
                continue  # no history flows through it (a batch, a constant, a leaf)
            for definition in self.defs.get(key, ()):
                if self.inert_definition(definition):
                    continue
                todo.extend(definition.reads.keys)
        return seen

    def linked(self, keys: Iterable[str]) -> Set[str]:
        """The names among `keys` that may carry a graph (not constants, batches or leaves)."""
        return {k for k in keys if self.class_of(k) in (GRAPH, UNKNOWN)}

    def descendants(self, keys: Set[str]) -> Set[str]:
        """`keys` and every name computed (by def-use) from one of them."""
        group = set(keys)
        changed = True
        while changed:
            changed = False
            for key, definitions in self.defs.items():
                if key in group or self.class_of(key) in (INERT, LEAF):
                    continue
                for definition in definitions:
                    if self.inert_definition(definition):
                        continue
                    if definition.reads.keys & group:
                        group.add(key)
                        changed = True
                        break
        return group

    # -- statement structure -----------------------------------------------------------------
    def enclosing(self, stmt: cst.CSTNode) -> List[Tuple[cst.CSTNode, _Place]]:
        """(statement, place) from `stmt` out to the top of the scope."""
        chain = []
        node: Optional[cst.CSTNode] = stmt
        while node is not None and node in self.places:
            place = self.places[node]
            chain.append((node, place))
            node = place.parent
        return chain

    def later_statements(self, stmt: cst.CSTNode) -> List[cst.CSTNode]:
        """Statements that may run after `stmt` in the same pass (not the next loop iteration)."""
        out: List[cst.CSTNode] = []
        for node, place in self.enclosing(stmt):
            out.extend(place.block[place.index + 1 :])
            parent = place.parent
            if isinstance(parent, (cst.Try, getattr(cst, "TryStar", cst.Try))):
                if place.part == "body":
                    for handler in parent.handlers:
                        out.extend(_suite(handler.body))
                    if parent.orelse is not None:
                        out.extend(_suite(parent.orelse.body))
                if place.part in ("body", "handler", "orelse") and parent.finalbody is not None:
                    out.extend(_suite(parent.finalbody.body))
            elif isinstance(parent, (cst.For, cst.While)) and place.part == "body" and parent.orelse is not None:
                out.extend(_suite(parent.orelse.body))
        return out

    def loops_around(self, stmt: cst.CSTNode) -> List[Union[cst.For, cst.While]]:
        return [
            place.parent
            for node, place in self.enclosing(stmt)
            if isinstance(place.parent, (cst.For, cst.While)) and place.part == "body"
        ]

    def calls_within(self, statements: Iterable[cst.CSTNode]) -> List[Later]:
        """Backward-like calls in these statements and the statements nested in them."""
        out: List[Later] = []
        for stmt in self.statements_within(statements):
            out.extend(self.later_calls.get(stmt, ()))
        return out

    def statements_within(self, statements: Iterable[cst.CSTNode]) -> Set[cst.CSTNode]:
        found: Set[cst.CSTNode] = set()
        todo = list(statements)
        while todo:
            stmt = todo.pop()
            if stmt in found:
                continue
            found.add(stmt)
            todo.extend(self.children.get(stmt, ()))
        return found

    # -- what a loop body carries from one iteration to the next ----------------------------------
    def carried(self, loop: Union[cst.For, cst.While]) -> Set[str]:
        """Names the loop body reads before assigning them, that may hold a graph."""
        if loop not in self._carried:
            self._carried[loop] = self._compute_carried(loop)
        return self._carried[loop]

    def _compute_carried(self, loop: Union[cst.For, cst.While]) -> Set[str]:
        reads = self.analysis.reads
        carried: Set[str] = set()
        assigned: Set[str] = set()
        if isinstance(loop, cst.For):
            assigned |= set(_target_keys(loop.target))
            carried |= self.collection_keys(loop) - {"<display>"}
        else:
            carried |= reads.reads(loop.test).keys
        self._carried_block(list(_suite(loop.body)), assigned, carried)
        return {k for k in self.linked(carried)}

    def _carried_block(self, block: _Block, assigned: Set[str], carried: Set[str]) -> Set[str]:
        for stmt in block:
            assigned = self._carried_statement(stmt, assigned, carried)
        return assigned

    def _read(self, expr: Optional[cst.BaseExpression], assigned: Set[str], carried: Set[str]) -> None:
        if expr is None:
            return
        keys = set(self.analysis.reads.reads(expr).keys)
        for call in _calls_outside_nested(expr):
            later = self.analysis.later_of(call)  # a backward reads the graph of its root
            if later is not None:
                keys |= self.analysis.reads.reads(later.tensor).keys if later.tensor is not None else set()
                keys |= later.roots or set()
        for key in keys:
            if key not in assigned:
                carried.add(key)

    def _carried_statement(self, stmt: cst.CSTNode, assigned: Set[str], carried: Set[str]) -> Set[str]:
        if isinstance(stmt, (cst.SimpleStatementLine,)):
            for small in stmt.body:
                assigned = self._carried_small(small, assigned, carried)
            return assigned
        if isinstance(stmt, cst.BaseSmallStatement):
            return self._carried_small(stmt, assigned, carried)
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            return assigned | {stmt.name.value}
        if isinstance(stmt, cst.If):
            self._read(stmt.test, assigned, carried)
            body = self._carried_block(list(_suite(stmt.body)), set(assigned), carried)
            if isinstance(stmt.orelse, cst.If):
                other = self._carried_statement(stmt.orelse, set(assigned), carried)
            elif stmt.orelse is not None:
                other = self._carried_block(list(_suite(stmt.orelse.body)), set(assigned), carried)
            else:
                other = assigned
            return assigned | (body & other)
        if isinstance(stmt, cst.For):
            self._read(stmt.iter, assigned, carried)
            inner = set(assigned) | set(_target_keys(stmt.target))
            self._carried_block(list(_suite(stmt.body)), inner, carried)
            if stmt.orelse is not None:
                self._carried_block(list(_suite(stmt.orelse.body)), set(assigned), carried)
            return assigned
        if isinstance(stmt, cst.While):
            self._read(stmt.test, assigned, carried)
            self._carried_block(list(_suite(stmt.body)), set(assigned), carried)
            return assigned
        if isinstance(stmt, cst.With):
            for item in stmt.items:
                self._read(item.item, assigned, carried)
                if item.asname is not None:
                    assigned = assigned | set(_target_keys(item.asname.name))
            return self._carried_block(list(_suite(stmt.body)), assigned, carried)
        if isinstance(stmt, (cst.Try, getattr(cst, "TryStar", cst.Try))):
            after = self._carried_block(list(_suite(stmt.body)), set(assigned), carried)
            ends = [after]
            for handler in stmt.handlers:
                ends.append(self._carried_block(list(_suite(handler.body)), set(assigned), carried))
            if stmt.orelse is not None:
                ends[0] = self._carried_block(list(_suite(stmt.orelse.body)), ends[0], carried)
            merged = set.intersection(*ends) if ends else assigned
            if stmt.finalbody is not None:
                merged = self._carried_block(list(_suite(stmt.finalbody.body)), merged, carried)
            return merged
        # Unknown statement kinds: every name in them is read before anything is assigned.
        carried |= {n for n in names_in(stmt) if n not in assigned}
        return assigned

    def _carried_small(self, small: cst.BaseSmallStatement, assigned: Set[str], carried: Set[str]) -> Set[str]:
        if isinstance(small, cst.Assign):
            self._read(small.value, assigned, carried)
            for target in small.targets:
                self._read_target_bases(target.target, assigned, carried)
            new = set()
            for target in small.targets:
                new |= set(_target_keys(target.target))
            return assigned | new
        if isinstance(small, cst.AnnAssign):
            self._read(small.value, assigned, carried)
            return assigned | (set(_target_keys(small.target)) if small.value is not None else set())
        if isinstance(small, cst.AugAssign):
            self._read(small.value, assigned, carried)
            keys = set(_target_keys(small.target))
            carried |= {k for k in keys if k not in assigned}
            return assigned | keys
        if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
            call = small.value
            func = call.func
            if isinstance(func, cst.Attribute) and func.attr.value == "detach_":
                key = key_of(func.value)
                return assigned | ({key} if key else set())
        if isinstance(small, (cst.Global, cst.Nonlocal, cst.Import, cst.ImportFrom, cst.Pass, cst.Break, cst.Continue)):
            return assigned
        if isinstance(small, cst.Del):
            return assigned
        value = getattr(small, "value", None)
        if isinstance(value, cst.BaseExpression):
            self._read(value, assigned, carried)
        return assigned

    def _read_target_bases(self, target: cst.BaseExpression, assigned: Set[str], carried: Set[str]) -> None:
        """`x[i] = v` updates x in place: a later read of x sees the old value plus v."""
        if isinstance(target, cst.Subscript):
            key = key_of(target.value)
            if key is not None and key not in assigned:
                carried.add(key)
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._read_target_bases(element.value, assigned, carried)


@dataclass(eq=False, repr=False)
class Reach:
    """One definition as a node of the flow-sensitive def-use graph (or a name from outside)."""

    key: str
    definition: Optional[Definition]
    sources: Set["Reach"] = field(default_factory=set)
    klass: str = INERT


_Env = Dict[str, FrozenSet[Reach]]


class ReachingDefinitions:
    """Which definitions reach each backward call: straight-line order, both arms of an `if`,
    loops to a fixpoint (with `break`/`continue`), `try` handlers from anywhere in the body.

    GL002 asks whether a later backward depends on the retained graph; a name reassigned between
    the two (`fake = G(z)` regenerated for the generator step) must not link them."""

    def __init__(self, scope: "Scope") -> None:
        self.scope = scope
        self.reach_of: Dict[int, Reach] = {}  # id(Definition) -> Reach
        self.outside: Dict[str, Reach] = {}
        self.at_call: Dict[cst.Call, Set[Reach]] = {}
        self._loops: List[Tuple[List[_Env], List[_Env]]] = []  # (break envs, continue envs)
        self._block(scope.body, {})
        self._classify()

    # -- walking ---------------------------------------------------------------------------
    def _resolve(self, keys: Iterable[str], env: _Env) -> Set[Reach]:
        out: Set[Reach] = set()
        for key in keys:
            found = env.get(key)
            if found:
                out |= found
            else:
                out.add(self._outside(key))
        return out

    def _outside(self, key: str) -> Reach:
        if key not in self.outside:
            self.outside[key] = Reach(key, None)
        return self.outside[key]

    def _record_calls(self, stmt: cst.CSTNode, env: _Env) -> None:
        reads = self.scope.analysis.reads
        for later in self.scope.later_calls.get(stmt, ()):
            if later.tensor is not None:
                keys = reads.reads(later.tensor).keys
            elif later.roots is not None:
                keys = later.roots
            else:
                continue
            self.at_call.setdefault(later.node, set()).update(self._resolve(keys, env))

    def _bind(self, node: cst.CSTNode, env: _Env) -> _Env:
        definitions = self.scope.defs_at.get(node, ())
        if not definitions:
            return env
        env = dict(env)
        for definition in definitions:
            reach = self.reach_of.get(id(definition))
            if reach is None:
                reach = self.reach_of[id(definition)] = Reach(definition.key, definition)
            reach.sources |= self._resolve(definition.reads.keys, env)
            env[definition.key] = frozenset({reach})
        return env

    def _block(self, block, env: _Env) -> _Env:
        for stmt in block:
            env = self._statement(stmt, env)
        return env

    def _statement(self, stmt: cst.CSTNode, env: _Env) -> _Env:
        if isinstance(stmt, (cst.SimpleStatementLine, cst.BaseSmallStatement)):
            self._record_calls(stmt, env)
            smalls = stmt.body if isinstance(stmt, cst.SimpleStatementLine) else [stmt]
            for small in smalls:
                if isinstance(small, cst.Break) and self._loops:
                    self._loops[-1][0].append(env)
                elif isinstance(small, cst.Continue) and self._loops:
                    self._loops[-1][1].append(env)
                env = self._bind(small, env)
            return env
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            return self._bind(stmt, env)
        if isinstance(stmt, cst.If):
            self._record_calls(stmt, env)
            body = self._block(_suite(stmt.body), env)
            if isinstance(stmt.orelse, cst.If):
                other = self._statement(stmt.orelse, env)
            elif stmt.orelse is not None:
                other = self._block(_suite(stmt.orelse.body), env)
            else:
                other = env
            return _union(body, other)
        if isinstance(stmt, (cst.For, cst.While)):
            return self._loop(stmt, env)
        if isinstance(stmt, cst.With):
            self._record_calls(stmt, env)
            return self._block(_suite(stmt.body), self._bind(stmt, env))
        if isinstance(stmt, (cst.Try, getattr(cst, "TryStar", cst.Try))):
            body = self._block(_suite(stmt.body), env)
            ends = []
            for handler in stmt.handlers:
                start = self._bind(handler, _union(env, body))
                ends.append(self._block(_suite(handler.body), start))
            if stmt.orelse is not None:
                body = self._block(_suite(stmt.orelse.body), body)
            ends.append(body)
            merged = ends[0]
            for end in ends[1:]:
                merged = _union(merged, end)
            if stmt.finalbody is not None:
                merged = self._block(_suite(stmt.finalbody.body), _union(env, merged))
            return merged
        # match and anything newer: each block from the same start, all ends merged.
        self._record_calls(stmt, env)
        merged = env
        for block in _blocks_of(stmt):
            merged = _union(merged, self._block(block, env))
        return merged

    def _loop(self, stmt: Union[cst.For, cst.While], env: _Env) -> _Env:
        head = env
        body_end = env
        breaks: List[_Env] = []
        for _ in range(6):  # reaching definitions grow monotonically; loops settle in a few passes
            self._record_calls(stmt, head)
            start = self._bind(stmt, head) if isinstance(stmt, cst.For) else head
            self._loops.append(([], []))
            body_end = self._block(_suite(stmt.body), start)
            breaks, continues = self._loops.pop()
            new_head = head
            for other in [body_end] + continues:
                new_head = _union(new_head, other)
            if new_head == head:
                break
            head = new_head
        after = _union(head, body_end)
        if stmt.orelse is not None:
            after = self._block(_suite(stmt.orelse.body), after)
        for other in breaks:
            after = _union(after, other)
        return after

    # -- classes -------------------------------------------------------------------------------
    def _classify(self) -> None:
        scope = self.scope
        reaches = list(self.reach_of.values())
        for reach in self.outside.values():
            reach.klass = scope.class_of(reach.key)
        changed = True
        rounds = 0
        while changed and rounds < 50:
            changed = False
            rounds += 1
            for reach in reaches:
                new = self._reach_class(reach)
                if new != reach.klass:
                    reach.klass = new
                    changed = True

    def _reach_class(self, reach: Reach) -> str:
        scope = self.scope
        definition = reach.definition
        if definition is None:
            return reach.klass
        if reach.key in scope.objects:
            return INERT
        classes = [source.klass for source in reach.sources if source is not reach]
        return scope.definition_class(definition, classes)

    # -- questions -----------------------------------------------------------------------------
    def linked_closure(self, call: cst.Call) -> Optional[Set[Reach]]:
        """Definitions that may hold part of the graph a backward call starts from."""
        start = self.at_call.get(call)
        if start is None:
            return None
        seen: Set[Reach] = set()
        todo = list(start)
        while todo:
            reach = todo.pop()
            if reach in seen:
                continue
            seen.add(reach)
            if reach.klass in (INERT, LEAF):
                continue
            todo.extend(reach.sources)
        return {r for r in seen if r.klass in (GRAPH, UNKNOWN)}


def _union(a: _Env, b: _Env) -> _Env:
    out = dict(a)
    for key, reaches in b.items():
        out[key] = out[key] | reaches if key in out else reaches
    return out


def _object_names(body: _Block) -> Set[str]:
    """Names called like functions or used like modules (`model(x)`, `model.parameters()`)."""
    names: Set[str] = set()
    for stmt in body:
        for node in walk(stmt, (cst.FunctionDef, cst.ClassDef)):
            if not isinstance(node, cst.Call):
                continue
            func = node.func
            if isinstance(func, cst.Name):
                names.add(func.value)
            elif isinstance(func, cst.Attribute):
                key = key_of(func)
                if key is not None and key.startswith("self."):
                    names.add(key)  # self.model(x)
                if func.attr.value in _OBJECT_METHODS:
                    receiver = key_of(func.value)
                    if receiver is not None and receiver != "self":
                        names.add(receiver)
    return names


def _reads_around(node: cst.CSTNode) -> Set[str]:
    """Names read by code, with nested scopes contributing only their free names."""
    out: Set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if current is not node and isinstance(current, SCOPES + COMPREHENSIONS):
            out |= free_names(current)
            continue
        if isinstance(current, cst.Name):
            out.add(current.value)
            continue
        if isinstance(current, cst.Attribute):
            key = key_of(current)
            if key is not None:
                out.add(key)
                out.add(key.split(".")[0])
            else:
                stack.append(current.value)
            continue
        if isinstance(current, cst.Arg):
            stack.append(current.value)
            continue
        stack.extend(children(current))
    return out


def free_names(node: cst.CSTNode) -> Set[str]:
    """Free variables of a nested scope (its own parameters and assignments removed)."""
    from gradlint.analysis.scalars import assigned_keys

    if isinstance(node, cst.FunctionDef):
        outside: Set[str] = set()
        for default in _param_defaults(node):
            outside |= _reads_around(default)  # evaluated where the function is defined
        local = set(_params(node)) | assigned_keys(node.body)
        return outside | (_reads_around(node.body) - local)
    if isinstance(node, cst.Lambda):
        return _reads_around(node.body) - {p.name.value for p in node.params.params}
    if isinstance(node, cst.ClassDef):
        return _reads_around(node.body) - assigned_keys(node.body)
    if isinstance(node, COMPREHENSIONS):
        outside = set()
        inside: Set[str] = set()
        bound: Set[str] = set()
        part = node.for_in
        first = True
        while part is not None:
            bound |= set(_bound_names(part.target))
            if first:
                outside |= _reads_around(part.iter)  # the first iterable is evaluated outside
                first = False
            else:
                inside |= _reads_around(part.iter)
            for condition in part.ifs:
                inside |= _reads_around(condition.test)
            part = part.inner_for_in
        if isinstance(node, cst.DictComp):
            inside |= _reads_around(node.key) | _reads_around(node.value)
        else:
            inside |= _reads_around(node.elt)
        return outside | (inside - bound)
    return _reads_around(node)


def _param_defaults(fn: cst.FunctionDef) -> Iterator[cst.BaseExpression]:
    params = fn.params
    for param in list(params.posonly_params) + list(params.params) + list(params.kwonly_params):
        if param.default is not None:
            yield param.default


def _join(classes: List[str]) -> str:
    if not classes:
        return INERT
    if any(c in (GRAPH, UNKNOWN) for c in classes):
        return GRAPH
    if any(c == LEAF for c in classes):
        return LEAF if all(c == LEAF for c in classes) else GRAPH
    return INERT


def _suite(suite) -> List[cst.CSTNode]:
    if isinstance(suite, cst.BaseSuite):
        return list(suite.body)
    return list(suite)


def _blocks_of(stmt: cst.CSTNode) -> Iterator[_Block]:
    for case in getattr(stmt, "cases", ()) or ():
        yield _suite(case.body)


def _calls_outside_nested(node: cst.CSTNode) -> List[cst.Call]:
    """Calls in a statement or expression; nested scopes, comprehensions and blocks are left out
    (nested statements are indexed on their own)."""
    return [n for n in walk(node, SCOPES + COMPREHENSIONS + SUITES) if isinstance(n, cst.Call)]


def _yields(node: cst.CSTNode) -> List[cst.Yield]:
    return [n for n in walk(node, SCOPES) if isinstance(n, cst.Yield)]


def _walruses(node: cst.CSTNode) -> List[cst.NamedExpr]:
    return [n for n in walk(node, SCOPES) if isinstance(n, cst.NamedExpr)]


def _params(fn: cst.FunctionDef) -> List[str]:
    params = fn.params
    names = [p.name.value for p in list(params.posonly_params) + list(params.params) + list(params.kwonly_params)]
    for star in (params.star_arg, params.star_kwarg):
        if isinstance(star, cst.Param):
            names.append(star.name.value)
    return names


# --------------------------------------------------------------------------------------------
# The module


@dataclass(frozen=True)
class Verdict:
    """A `retain_graph=True` the analysis proved unnecessary."""

    call: BackwardCall
    retain_arg: cst.Arg
    root: str  # source text of the root tensor


class GraphAnalysis:
    """Scopes of one module and the backward calls in them."""

    def __init__(self, module: cst.Module, imports: ImportMap, backward_functions: Tuple[str, ...] = ()) -> None:
        self.module = module
        self.imports = imports
        detaching = _detaching_functions(module, imports)
        self.reads = ReadCollector(imports, detaching, _pure_functions(module, imports, detaching))
        self.reads.stateful = _stateful_instances(module, self.reads)
        self.backward_functions = tuple(backward_functions)
        self.helpers = _backward_helpers(module, imports)
        self.scopes: List[Scope] = []
        self.scope_of: Dict[cst.Call, Scope] = {}
        self.statement_of: Dict[cst.Call, cst.CSTNode] = {}
        self._build(module.body, module, [], None)

    def _build(self, body: _Block, node: cst.CSTNode, params: List[str], outer: Optional[Scope]) -> None:
        scope = Scope(node, list(body), params, self, outer)
        self.scopes.append(scope)
        for stmt, calls in scope.later_calls.items():
            for later in calls:
                self.scope_of[later.node] = scope
                self.statement_of[later.node] = stmt
        module_scope = outer if outer is not None else scope
        for nested in scope.nested_scopes:
            if isinstance(nested, cst.FunctionDef):
                self._build(_suite(nested.body), nested, _params(nested), module_scope)
            elif isinstance(nested, cst.ClassDef):
                self._build(_suite(nested.body), nested, [], module_scope)

    def later_of(self, call: cst.Call) -> Optional[Later]:
        """The call as a backward-like call (a backward, a configured helper, a helper here)."""
        found = backward_call(call, self.imports)
        if found is not None:
            return Later(call, found.tensor if not unknown_arguments(call) else None, backward=found)
        name = dotted(call.func)
        if name is None:
            return None
        last = name.split(".")[-1]
        configured = any(name == f or last == f.split(".")[-1] for f in self.backward_functions)
        if configured or last in self.helpers:
            roots: Set[str] = set()
            for arg in call.args:
                roots |= self.reads.reads(arg.value).keys
            return Later(call, None, roots=roots)
        return None

    # -- the question GL002 asks ------------------------------------------------------------------
    def unnecessary_retains(self) -> List[Verdict]:
        verdicts = []
        for call, scope in self.scope_of.items():
            later = next(l for l in scope.later_calls[self.statement_of[call]] if l.node is call)
            backward = later.backward
            if backward is None:
                continue
            arg = _retain_argument(backward)
            if arg is None:
                continue
            if self._retain_unneeded(backward, scope, self.statement_of[call]):
                verdicts.append(Verdict(backward, arg, _short(self.module.code_for_node(backward.tensor))))
        return verdicts

    def _retain_unneeded(self, backward: BackwardCall, scope: Scope, stmt: cst.CSTNode) -> bool:
        if backward.tensor is None or unknown_arguments(backward.node):
            return False
        if backward.create_graph is not None and not _is_false(backward.create_graph):
            return False
        if not _is_true(backward.retain_graph):
            return False
        tensor = backward.tensor
        if self._held_elsewhere(tensor, scope):
            return False
        roots = self.reads.reads(tensor)
        root_keys = set(roots.keys)
        graph = scope.linked(scope.closure(root_keys))
        group = scope.descendants(graph)
        if self._escapes(backward, scope, stmt, group):
            return False
        later_statements = scope.later_statements(stmt)
        candidates = scope.calls_within(later_statements)
        candidates += [l for l in scope.later_calls.get(stmt, ()) if l.node is not backward.node]
        if candidates:
            flow = scope.reaching()
            retained = flow.linked_closure(backward.node)
            if retained is None:
                return False
            for later in candidates:
                reached = flow.linked_closure(later.node)
                if reached is None or reached & retained:
                    return False
        loops = scope.loops_around(stmt)
        if loops:
            # A value of this iteration's graph that lives on into the next one matters when some
            # backward that can still run (in the loop or after it) starts from something reading it.
            reachable: Set[str] = set()
            for later in scope.calls_within(_suite(loops[-1].body)) + candidates:
                deps = self._deps(later, scope)
                if deps is None:
                    return False  # a backward whose root we cannot read
                reachable |= deps
            for loop in loops:
                if scope.carried(loop) & group & reachable:
                    return False
        return True

    def _held_elsewhere(self, tensor: cst.BaseExpression, scope: Scope) -> bool:
        """A root the function did not compute (a parameter, an attribute, a loop's element)."""
        base = tensor
        while isinstance(base, cst.Subscript):
            base = base.value
        if not isinstance(base, (cst.Name, cst.Attribute)):
            return False
        key = key_of(base)
        if key is None:
            return True
        if key not in scope.defs:
            return True
        return any(d.loop_target is not None for d in scope.defs[key])

    def _deps(self, later: Later, scope: Scope) -> Optional[Set[str]]:
        if later.tensor is None:
            if later.roots is None:
                return None
            return scope.closure(later.roots)
        return scope.closure(self.reads.reads(later.tensor).keys)

    def _may_traverse(self, later: Later, scope: Scope, graph: Set[str]) -> bool:
        deps = self._deps(later, scope)
        if deps is None:
            return True
        return bool(scope.linked(deps) & graph)

    def _escapes(self, backward: BackwardCall, scope: Scope, stmt: cst.CSTNode, group: Set[str]) -> bool:
        after = scope.statements_within(scope.later_statements(stmt))
        for loop in scope.loops_around(stmt):
            after |= scope.statements_within(_suite(loop.body))
        lightning_manual = (
            backward.kind == "manual"
            and isinstance(scope.node, cst.FunctionDef)
            and scope.node.name.value == "training_step"
        )
        for escape in scope.escapes:
            if not escape.reads & group:
                continue
            if escape.kind == "return" and lightning_manual:
                continue  # Lightning does not run backward on what a manual training_step returns
            if escape.kind == "call" and escape.statement not in after:
                continue
            if escape.kind == "container" and self._local_container(escape.container, scope):
                continue  # a local list: followed by def-use like any other value holding the graph
            return True
        return False

    @staticmethod
    def _local_container(name: Optional[str], scope: Scope) -> bool:
        if name is None or "." in name or name in scope.params or name not in scope.defs:
            return False
        declared = {n for e in scope.escapes if e.kind == "global" for n in e.reads}
        return name not in declared and isinstance(scope.node, (cst.FunctionDef, cst.Module))


def _retain_argument(backward: BackwardCall) -> Optional[cst.Arg]:
    for arg in backward.node.args:
        if arg.value is backward.retain_graph and backward.retain_graph is not None:
            return arg
    return None


def _short(code: str, limit: int = 40) -> str:
    code = " ".join(code.split())
    return code if len(code) <= limit else code[: limit - 3] + "..."


def _functions(module: cst.Module) -> Iterator[cst.FunctionDef]:
    """Every function and method of the module, nested ones included."""
    for node in walk(module):
        if isinstance(node, cst.FunctionDef):
            yield node


def _own_nodes(fn: cst.FunctionDef) -> Iterator[cst.CSTNode]:
    """Nodes of a function's body that run in it (not in functions nested inside)."""
    return walk(fn.body, (cst.FunctionDef,))


def _backward_helpers(module: cst.Module, imports: ImportMap) -> FrozenSet[str]:
    """Names of functions in this module that run a backward, directly or through each other."""
    calls: Dict[str, Set[str]] = {}
    helpers: Set[str] = set()
    for fn in _functions(module):
        name = fn.name.value
        called = calls.setdefault(name, set())
        for node in _own_nodes(fn):
            if isinstance(node, cst.Call):
                if backward_call(node, imports) is not None:
                    helpers.add(name)
                text = dotted(node.func)
                if text is not None:
                    called.add(text.split(".")[-1])
    changed = True
    while changed:
        changed = False
        for name, called in calls.items():
            if name not in helpers and called & helpers:
                helpers.add(name)
                changed = True
    return frozenset(helpers)


def _stateful_instances(module: cst.Module, reads: ReadCollector) -> FrozenSet[str]:
    """Names bound to instances of classes of this module whose methods (other than `__init__`)
    store a value with history on `self`: each call of such an object continues the last one."""
    stateful_classes: Set[str] = set()
    for node in walk(module):
        if not isinstance(node, cst.ClassDef):
            continue
        for method in _suite(node.body):
            if not isinstance(method, cst.FunctionDef) or method.name.value == "__init__":
                continue
            if any(_stores_history_on_self(n, reads) for n in _own_nodes(method)):
                stateful_classes.add(node.name.value)
                break
    if not stateful_classes:
        return frozenset()
    names: Set[str] = set()
    for node in walk(module):
        if isinstance(node, cst.Assign) and isinstance(node.value, cst.Call):
            func = node.value.func
            while isinstance(func, cst.Attribute) and isinstance(func.value, cst.Call):
                func = func.value.func  # Tagger(...).to(device)
            text = dotted(func)
            if text is not None and text.split(".")[-1] in stateful_classes:
                for target in node.targets:
                    names.update(_target_keys(target.target))
    return frozenset(names)


def _stores_history_on_self(node: cst.CSTNode, reads: ReadCollector) -> bool:
    if isinstance(node, cst.Assign):
        targets = [t.target for t in node.targets]
        value = node.value
    elif isinstance(node, (cst.AugAssign, cst.AnnAssign)):
        targets, value = [node.target], node.value
    else:
        return False
    if value is None or not any(k.startswith("self.") for t in targets for k in _target_keys(t)):
        return False
    found = reads.reads(value)
    return found.kind != INERT or bool(found.ctors)


def _pure_functions(
    module: cst.Module, imports: ImportMap, detaching: FrozenSet[str]
) -> Dict[str, FrozenSet[str]]:
    """Module-level functions that call nothing the analysis does not know (only torch, tensor
    methods, builtins and each other), with the module-level names they read. Their results are
    functions of their arguments, like `batchify` and `get_batch` in the word language model."""
    from gradlint.analysis.scalars import assigned_keys

    functions: Dict[str, cst.FunctionDef] = {}
    counts: Dict[str, int] = {}
    for stmt in module.body:
        if isinstance(stmt, cst.FunctionDef):
            counts[stmt.name.value] = counts.get(stmt.name.value, 0) + 1
            functions[stmt.name.value] = stmt
    candidates: Dict[str, FrozenSet[str]] = {}
    for name, fn in functions.items():
        if counts[name] > 1 or fn.decorators or fn.asynchronous is not None:
            continue
        nodes = list(_own_nodes(fn))
        if any(isinstance(n, (cst.Yield, cst.Global, cst.Nonlocal, cst.FunctionDef, cst.Lambda)) for n in nodes):
            continue
        local = set(_params(fn)) | assigned_keys(fn.body)
        free = {n for n in _reads_around(fn.body) if n not in local and "." not in n}
        candidates[name] = frozenset(free - set(imports.aliases) - set(_BUILTINS))
    changed = True
    while changed:
        changed = False
        reads = ReadCollector(imports, detaching, dict(candidates))
        for name in sorted(candidates):
            for node in _own_nodes(functions[name]):
                found = reads.reads(node) if isinstance(node, cst.Call) else None
                if found is not None and (found.opaque or found.receivers):
                    del candidates[name]
                    changed = True
                    break
    return candidates


def _detaching_functions(module: cst.Module, imports: ImportMap) -> FrozenSet[str]:
    """Functions whose every `return` gives a value without history (`return h.detach()`,
    `return tuple(repackage_hidden(v) for v in h)`): a greatest fixpoint, so recursion works."""
    returns: Dict[str, List[Optional[cst.BaseExpression]]] = {}
    excluded: Set[str] = set()  # generators, and names defined twice
    for fn in _functions(module):
        name = fn.name.value
        if name in returns:
            excluded.add(name)
        values = returns.setdefault(name, [])
        for node in _own_nodes(fn):
            if isinstance(node, cst.Return):
                values.append(node.value)
            elif isinstance(node, cst.Yield):
                excluded.add(name)
    candidates = {
        name for name, values in returns.items() if values and name not in excluded and all(v is not None for v in values)
    }
    changed = True
    while changed:
        changed = False
        reads = ReadCollector(imports, frozenset(candidates))
        for name in sorted(candidates):
            if any(reads.reads(value).kind != INERT or reads.reads(value).ctors for value in returns[name]):
                candidates.discard(name)
                changed = True
    return frozenset(candidates)


def unnecessary_retains(module: cst.Module, imports: ImportMap, backward_functions: Tuple[str, ...] = ()):
    """Every `retain_graph=True` in the module that no later backward can need."""
    from gradlint.analysis.scalars import _ASSIGNED

    try:
        return GraphAnalysis(module, imports, backward_functions).unnecessary_retains()
    finally:
        _ASSIGNED.clear()  # keep no tree alive after the file is done

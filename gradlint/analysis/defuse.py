"""The vocabulary of GL002's retained-graph proof: definitions, escapes, backward-like calls.

A function body (or a module or class body) is indexed by `gradlint.analysis.graph_scope.Scope` into
the records below; `loop_carry` and `reaching` answer questions about them, and `graphs` asks the
question GL002 reports on. The small tree helpers here are shared by all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Protocol, Set, Union

import libcst as cst

from gradlint.analysis.backward import BackwardCall
from gradlint.analysis.names import ImportMap
from gradlint.analysis.reads import GRAPH, INERT, LEAF, OBJECT_METHODS, UNKNOWN, ReadCollector, Reads, key_of
from gradlint.analysis.tree import COMPREHENSIONS, SCOPES, SUITES, block_statements, walk

# The node types of `try` statements (`try ... except*` where LibCST knows it).
TRY_TYPES: tuple = (cst.Try, cst.TryStar) if hasattr(cst, "TryStar") else (cst.Try,)
Loop = Union[cst.For, cst.While]


@dataclass(eq=False, repr=False)
class Definition:
    """One binding of a name: what its value reads, where, and whether under no_grad."""

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
    targets: Set[str] = field(default_factory=set)  # for "store": `self.x` keys, or "<elsewhere>"
    call: Optional[cst.Call] = None  # for "call": the call that takes the value


@dataclass
class Later:
    """A backward-like call: a real backward, a configured helper, or a helper of this module."""

    node: cst.Call
    tensor: Optional[cst.BaseExpression]  # None: unknown root
    roots: Optional[Set[str]] = None  # for helpers: every name passed in
    backward: Optional[BackwardCall] = None


Block = List[cst.CSTNode]


@dataclass
class Place:
    """Where a statement sits: its block, its index there and the statement owning the block."""

    parent: Optional[cst.CSTNode]  # the compound statement owning the block, None at the top
    part: str  # "body", "orelse", "handler", "finally"
    block: Block
    index: int


class AnalysisView(Protocol):
    """What a scope asks of the module-wide analysis that built it."""

    reads: ReadCollector
    imports: ImportMap
    stored_attributes: FrozenSet[str]
    store_attributes: FrozenSet[str]
    store_assigned: FrozenSet[str]
    store_globals: FrozenSet[str]
    may_walk: Callable[[cst.Call], bool]

    def later_of(self, call: cst.Call) -> Optional[Later]: ...


class ScopeView(Protocol):
    """The part of `graph_scope.Scope` that loop and reaching-definition questions read."""

    analysis: AnalysisView
    body: Block
    params: Set[str]
    objects: Set[str]
    defs: Dict[str, List[Definition]]
    defs_at: Dict[cst.CSTNode, List[Definition]]
    later_calls: Dict[cst.CSTNode, List[Later]]
    container_collections: Set[str]
    refreshing: Dict[cst.Call, FrozenSet[str]]

    @property
    def outer(self) -> Optional["ScopeView"]: ...

    def class_of(self, key: str) -> str: ...

    def class_or_graph(self, key: str) -> str: ...

    def library_object(self, key: str) -> bool: ...

    def is_instance(self, name: str) -> bool: ...

    def inert_definition(self, definition: Definition) -> bool: ...

    def definition_class(self, definition: Definition, classes: List[str]) -> str: ...

    def linked(self, keys: Iterable[str]) -> Set[str]: ...

    def persistent(self, key: str) -> bool: ...


PLAIN_TYPES = frozenset({"int", "float", "str", "bool", "bytes"})


def plain_params(fn: cst.FunctionDef) -> Set[str]:
    """Parameters annotated `int`/`float`/`str`/`bool` or defaulting to a number, string or flag
    (`lambda_reg=0.1`, `epochs: int`): not tensors. `hidden=None` says nothing."""
    params = fn.params
    plain: Set[str] = set()
    for param in list(params.posonly_params) + list(params.params) + list(params.kwonly_params):
        annotation = param.annotation.annotation if param.annotation is not None else None
        default = param.default
        if isinstance(annotation, cst.Name) and annotation.value in PLAIN_TYPES:
            plain.add(param.name.value)
        elif isinstance(default, (cst.Integer, cst.Float, cst.SimpleString, cst.ConcatenatedString)) or (
            isinstance(default, cst.Name) and default.value in ("True", "False")
        ):
            plain.add(param.name.value)
        elif isinstance(default, cst.UnaryOperation) and isinstance(default.expression, (cst.Integer, cst.Float)):
            plain.add(param.name.value)
    return plain


def may_skip_ahead(stmt: cst.CSTNode) -> bool:
    """Does `stmt` contain a `continue` (outside nested loops and functions)?"""
    stop = SCOPES + (cst.For, cst.While)
    return any(isinstance(n, cst.Continue) for n in walk(stmt, stop))



def object_names(body: Block) -> Set[str]:
    """Names called like functions or used like modules (`model(x)`, `model.parameters()`)."""
    names: Set[str] = set()
    for stmt in body:
        for node in walk(stmt, (cst.FunctionDef, cst.ClassDef)):
            if type(node) is not cst.Call:  # exact types: LibCST's node classes are final
                continue
            func = node.func
            if type(func) is cst.Name:
                names.add(func.value)
            elif type(func) is cst.Attribute:
                key = key_of(func)
                if key is not None and key.startswith("self."):
                    names.add(key)  # self.model(x)
                if func.attr.value in OBJECT_METHODS:
                    receiver = key_of(func.value)
                    if receiver is not None and receiver != "self":
                        names.add(receiver)
    return names


def join_classes(classes: List[str]) -> str:
    if not classes:
        return INERT
    if any(c in (GRAPH, UNKNOWN) for c in classes):
        return GRAPH
    if any(c == LEAF for c in classes):
        return LEAF if all(c == LEAF for c in classes) else GRAPH
    return INERT


def blocks_of(stmt: cst.CSTNode) -> Iterator[Block]:
    for case in getattr(stmt, "cases", ()) or ():
        yield block_statements(case.body)


def calls_outside_nested(node: cst.CSTNode) -> List[cst.Call]:
    """Calls in a statement or expression; nested scopes, comprehensions and blocks are left out
    (nested statements are indexed on their own)."""
    return [n for n in walk(node, SCOPES + COMPREHENSIONS + SUITES) if type(n) is cst.Call]


def yields_in(node: cst.CSTNode) -> List[cst.Yield]:
    return [n for n in walk(node, SCOPES) if type(n) is cst.Yield]


def walruses_in(node: cst.CSTNode) -> List[cst.NamedExpr]:
    return [n for n in walk(node, SCOPES) if type(n) is cst.NamedExpr]

PASS_THROUGH = frozenset({"enumerate", "zip", "reversed", "list", "tuple", "sorted", "iter"})


def iterated_calls(iterable: cst.BaseExpression) -> List[cst.Call]:
    """The calls whose results a `for` walks: the iterable, or inside `enumerate(...)`/`zip(...)`."""
    if not isinstance(iterable, cst.Call):
        return []
    if isinstance(iterable.func, cst.Name) and iterable.func.value in PASS_THROUGH:
        found: List[cst.Call] = []
        for arg in iterable.args:
            found += iterated_calls(arg.value)
        return found
    return [iterable]

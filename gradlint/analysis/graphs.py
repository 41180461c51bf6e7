"""Which later backward can walk a graph kept by `retain_graph=True`? (The fact GL002 reads.)

`retain_graph=True` keeps a graph's saved tensors after its backward so that *another* backward can
walk it again. It is unnecessary when no later backward can reach that graph. This module proves
that, or gives up (and the rule stays silent):

1. The graph must not escape the function: the root or anything computed from or into it is not
   returned, yielded, stored on an attribute or in a container that outlives the function, declared
   global/nonlocal, captured by a nested function, or passed (after the backward) to a call whose
   result is dropped and that we do not know.
2. No backward that runs later in the same pass (later statements of the block and of enclosing
   blocks, `except`/`finally`, loop `else`) starts from a tensor computed, through the definitions
   that reach it, from a tensor of the retained graph (flow-sensitive: a regenerated `fake` is a
   new graph).
3. When the backward is inside a loop, the next iteration must not reach this iteration's graph:
   a value of the graph that the loop body reads before assigning it (a hidden state carried
   without `.detach()`, a tensor computed before the loop) blocks the finding when a backward that
   can still run depends on it.

Values are classified per definition as INERT (no history: constants, factories, detached values,
the loop's batch), LEAF (requires grad, no history), GRAPH (may carry history) or UNKNOWN (from
outside the function: linking). Every doubt resolves towards GRAPH, i.e. towards silence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, Iterator, List, Optional, Set, Tuple, Union

import libcst as cst

from gradlint.analysis.backward import BackwardCall, backward_call, unknown_arguments
from gradlint.analysis.helpers import (
    backward_helpers,
    detaching_functions,
    pure_functions,
    stateful_instances,
    stored_attributes,
)
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.reads import (
    BUILTINS,
    CONTAINER_STORES,
    GRAPH,
    INERT,
    LEAF,
    LOGGING_METHODS,
    OBJECT_METHODS,
    UNKNOWN,
    ReadCollector,
    Reads,
    free_names,
    is_false,
    is_true,
    key_of,
    names_in,
    param_names,
    stores_outside,
    target_keys,
)
from gradlint.analysis.tree import COMPREHENSIONS, SCOPES, SUITES, block_statements, children, walk


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
        # Parameters declared or defaulted as plain numbers/strings/flags cannot hold a graph.
        self.plain_params = _plain_params(node) if isinstance(node, cst.FunctionDef) else set()
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
            self._index_block(block_statements(stmt.body), stmt, "body", no_grad, loop)
            if isinstance(stmt.orelse, cst.If):
                self._index_block([stmt.orelse], stmt, "orelse", no_grad, loop)
            elif stmt.orelse is not None:
                self._index_block(block_statements(stmt.orelse.body), stmt, "orelse", no_grad, loop)
            return
        if isinstance(stmt, cst.For):
            self._note_calls(stmt.iter, stmt)
            iter_reads = reads.reads(stmt.iter)
            for key in target_keys(stmt.target):
                self._define(key, iter_reads, stmt, no_grad, loop_target=stmt)
            self._index_block(block_statements(stmt.body), stmt, "body", no_grad, stmt)
            if stmt.orelse is not None:
                self._index_block(block_statements(stmt.orelse.body), stmt, "orelse", no_grad, loop)
            return
        if isinstance(stmt, cst.While):
            self._note_calls(stmt.test, stmt)
            self._index_block(block_statements(stmt.body), stmt, "body", no_grad, stmt)
            if stmt.orelse is not None:
                self._index_block(block_statements(stmt.orelse.body), stmt, "orelse", no_grad, loop)
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
                    if item.item.args and is_false(item.item.args[0].value):
                        inner_no_grad = True
                if item.asname is not None:
                    for key in target_keys(item.asname.name):
                        self._define(key, reads.reads(item.item), stmt, no_grad)
            self._index_block(block_statements(stmt.body), stmt, "body", inner_no_grad, loop)
            return
        if isinstance(stmt, (cst.Try, getattr(cst, "TryStar", cst.Try))):
            self._index_block(block_statements(stmt.body), stmt, "body", no_grad, loop)
            for handler in stmt.handlers:
                if handler.name is not None:
                    for key in target_keys(handler.name.name):
                        self._define(key, Reads(kind=INERT), handler, no_grad)
                self._index_block(block_statements(handler.body), stmt, "handler", no_grad, loop)
            if stmt.orelse is not None:
                self._index_block(block_statements(stmt.orelse.body), stmt, "orelse", no_grad, loop)
            if stmt.finalbody is not None:
                self._index_block(block_statements(stmt.finalbody.body), stmt, "finally", no_grad, loop)
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
                keys = list(target_keys(target.target))
                if len(keys) > 1 and not isinstance(small.value, (cst.Tuple, cst.List)):
                    # `a, b = model(x)`: both come from one call and share its graph.
                    shared = f"<unpacked@{len(self.defs)}:{keys[0]}>"
                    self._define(shared, value, small, no_grad)
                    for key in keys:
                        self._define(key, Reads(keys={shared}), small, no_grad)
                    continue
                for key in keys:
                    self._define(key, value, small, no_grad)
                if stores_outside(target.target):
                    self.escapes.append(Escape("store", set(value.keys), stmt))
            self._note_walrus(small.value, small, no_grad)
        elif isinstance(small, cst.AnnAssign):
            if small.value is not None:
                value = reads.reads(small.value)
                for key in target_keys(small.target):
                    self._define(key, value, small, no_grad)
                if stores_outside(small.target):
                    self.escapes.append(Escape("store", set(value.keys), stmt))
        elif isinstance(small, cst.AugAssign):
            value = reads.reads(small.value)
            keys = list(target_keys(small.target))
            for key in keys:
                combined = value.copy()
                combined.keys.add(key)
                combined.kind = None  # `total += x` keeps what `total` held
                self._define(key, combined, small, no_grad)
            if stores_outside(small.target):
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
            if method in CONTAINER_STORES:
                value = reads._args(call)
                self.escapes.append(Escape("container", set(value.keys), stmt, container=receiver))
                if receiver is not None and value.keys:
                    self.container_collections.add(receiver)
                    self._define(receiver, Reads(keys=set(value.keys) | {receiver}), small, no_grad)
                return
            if method in LOGGING_METHODS:
                return
        if backward_call(call, self.analysis.imports) is not None:
            return
        qualified = self.analysis.imports.resolve(func)
        if qualified is not None and qualified.split(".")[0] == "torch":
            return
        if isinstance(func, cst.Name) and func.value in BUILTINS:
            return
        self.escapes.append(Escape("call", set(reads._args(call).keys), stmt))

    def _note_walrus(self, expr: cst.BaseExpression, small, no_grad: bool) -> None:
        for node in _walruses(expr):
            for key in target_keys(node.target):
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
            return INERT if key in self.plain_params else UNKNOWN
        if self.outer is not None:
            head = key.split(".")[0]
            if head in self.outer.defs and "." not in key:
                return self.outer.class_of(key)
        if "." in key and not key.startswith("self."):
            # An attribute read (`args.lr`, `outputs.loss`): what its object is, except that an
            # attribute of a module may hold tensors the module stored (saved log-probs, state).
            head, _, attribute = key.partition(".")
            if not self._module_like(head):
                return self.class_of(head)
            # Tensors a module holds are parameters and buffers (leaves), unless the file fills
            # that attribute with results (`policy.saved_log_probs.append(...)`, `self.h = out`).
            stored = self.analysis.stored_attributes
            return UNKNOWN if attribute.split(".")[0] in stored else LEAF
        return UNKNOWN

    def _module_like(self, name: str) -> bool:
        if name in self.objects:
            return True
        if name in self.defs or name in self.params or self.outer is None:
            return False
        return self.outer._module_like(name)

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
        if not isinstance(iterable, (cst.List, cst.Tuple)):
            keys |= self._graph_sources(iterable, reads)
        return keys

    def _graph_sources(self, iterable: cst.BaseExpression, reads: Reads) -> Set[str]:
        """Graph values computed here before the loop that the iterable walks (`for out in outs`,
        `pytree.tree_leaves(outs)`, `enumerate(outs)`, `outs.items()` after `outs = model(x)`), or
        `{"<display>"}` when it calls a module itself (`for o in model(x)`): every element then
        shares one graph. Parameters, globals and library objects (`DataLoader(ds)`) stay data."""
        keys = {
            k for k in reads.keys | reads.receivers
            if k in self.defs and k not in self.objects and self._class_or_graph(k) == GRAPH
            and not self.library_object(k) and self._built_here(k, set())
        }
        if not keys and any(self._module_variable(c.func) for c in _iterated_calls(iterable)):
            keys.add("<display>")
        return keys

    def _built_here(self, key: str, seen: Set[str]) -> bool:
        """Does `key` hold a graph this function built (a module or unknown call, a leaf's use),
        not just a value computed from parameters (`batches = batchify(train_data)`: data)?"""
        if key in seen:
            return False
        seen.add(key)
        for definition in self.defs.get(key, ()):
            if definition.loop_target is not None or self.inert_definition(definition):
                continue
            reads = definition.reads
            if reads.opaque or reads.kind == LEAF or reads.object_args & self.objects:
                return True
            if any(self.is_instance(c) for c in reads.ctors):
                return True
            for source in reads.keys | reads.receivers:
                if source not in self.defs or self._class_or_graph(source) == INERT:
                    continue
                if self._built_here(source, seen):
                    return True
        return False

    def _module_variable(self, func: cst.BaseExpression) -> bool:
        """Is the callee a variable (a parameter or an assigned name), hence a module instance
        rather than a function or class of the file or an import (`batches(data)`, `tqdm(loader)`)?"""
        if not isinstance(func, cst.Name):
            return False
        scope: Optional[Scope] = self
        while scope is not None:
            if func.value in scope.params:
                return True
            definitions = scope.defs.get(func.value)
            if definitions:
                return all(isinstance(d.node, (cst.Assign, cst.AnnAssign)) for d in definitions)
            scope = scope.outer
        return False

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

    def reset_after(self, stmt: cst.CSTNode, loop: cst.CSTNode, group: Set[str]) -> Set[str]:
        """Names every path from `stmt` to the end of `loop`'s body assigns afresh (`loss = 0`,
        `hidden = hidden.detach()` after the backward): they carry nothing of `group` onward."""
        reset: Set[str] = set()
        for node, place in self.enclosing(stmt):
            for later in place.block[place.index + 1 :]:
                if _may_skip_ahead(later):
                    return set()  # a `continue` may jump over the reset
                if not isinstance(later, cst.SimpleStatementLine):
                    continue  # only unconditional statements of this block count
                for small in later.body:
                    if isinstance(small, cst.Assign):
                        value = self.analysis.reads.reads(small.value)
                        if value.keys & group:
                            continue  # `prev = loss`: the new value holds the graph
                        for target in small.targets:
                            if isinstance(target.target, cst.Name):
                                reset.add(target.target.value)
            if place.parent is loop:
                break
        return reset

    def later_statements(self, stmt: cst.CSTNode) -> List[cst.CSTNode]:
        """Statements that may run after `stmt` in the same pass (not the next loop iteration)."""
        out: List[cst.CSTNode] = []
        for node, place in self.enclosing(stmt):
            out.extend(place.block[place.index + 1 :])
            parent = place.parent
            if isinstance(parent, (cst.Try, getattr(cst, "TryStar", cst.Try))):
                if place.part == "body":
                    for handler in parent.handlers:
                        out.extend(block_statements(handler.body))
                    if parent.orelse is not None:
                        out.extend(block_statements(parent.orelse.body))
                if place.part in ("body", "handler", "orelse") and parent.finalbody is not None:
                    out.extend(block_statements(parent.finalbody.body))
            elif isinstance(parent, (cst.For, cst.While)) and place.part == "body" and parent.orelse is not None:
                out.extend(block_statements(parent.orelse.body))
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
            assigned |= set(target_keys(loop.target))
            collection = self.collection_keys(loop)
            carried |= collection - {"<display>"}
            if collection:
                carried |= set(target_keys(loop.target))  # the next element shares this one's graph
        else:
            carried |= reads.reads(loop.test).keys
        self._carried_block(block_statements(loop.body), assigned, carried)
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
            head = key if key.startswith("self.") else key.split(".")[0]
            if key not in assigned and head not in assigned:
                carried.add(key)  # `outputs.loss` is fresh once `outputs` is

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
            body = self._carried_block(block_statements(stmt.body), set(assigned), carried)
            if isinstance(stmt.orelse, cst.If):
                other = self._carried_statement(stmt.orelse, set(assigned), carried)
            elif stmt.orelse is not None:
                other = self._carried_block(block_statements(stmt.orelse.body), set(assigned), carried)
            else:
                other = assigned
            return assigned | (body & other)
        if isinstance(stmt, cst.For):
            self._read(stmt.iter, assigned, carried)
            inner = set(assigned) | set(target_keys(stmt.target))
            self._carried_block(block_statements(stmt.body), inner, carried)
            if stmt.orelse is not None:
                self._carried_block(block_statements(stmt.orelse.body), set(assigned), carried)
            return assigned
        if isinstance(stmt, cst.While):
            self._read(stmt.test, assigned, carried)
            self._carried_block(block_statements(stmt.body), set(assigned), carried)
            return assigned
        if isinstance(stmt, cst.With):
            for item in stmt.items:
                self._read(item.item, assigned, carried)
                if item.asname is not None:
                    assigned = assigned | set(target_keys(item.asname.name))
            return self._carried_block(block_statements(stmt.body), assigned, carried)
        if isinstance(stmt, (cst.Try, getattr(cst, "TryStar", cst.Try))):
            after = self._carried_block(block_statements(stmt.body), set(assigned), carried)
            ends = [after]
            for handler in stmt.handlers:
                ends.append(self._carried_block(block_statements(handler.body), set(assigned), carried))
            if stmt.orelse is not None:
                ends[0] = self._carried_block(block_statements(stmt.orelse.body), ends[0], carried)
            merged = set.intersection(*ends) if ends else assigned
            if stmt.finalbody is not None:
                merged = self._carried_block(block_statements(stmt.finalbody.body), merged, carried)
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
                new |= set(target_keys(target.target))
            return assigned | new
        if isinstance(small, cst.AnnAssign):
            self._read(small.value, assigned, carried)
            return assigned | (set(target_keys(small.target)) if small.value is not None else set())
        if isinstance(small, cst.AugAssign):
            self._read(small.value, assigned, carried)
            keys = set(target_keys(small.target))
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
            body = self._block(block_statements(stmt.body), env)
            if isinstance(stmt.orelse, cst.If):
                other = self._statement(stmt.orelse, env)
            elif stmt.orelse is not None:
                other = self._block(block_statements(stmt.orelse.body), env)
            else:
                other = env
            return _union(body, other)
        if isinstance(stmt, (cst.For, cst.While)):
            return self._loop(stmt, env)
        if isinstance(stmt, cst.With):
            self._record_calls(stmt, env)
            return self._block(block_statements(stmt.body), self._bind(stmt, env))
        if isinstance(stmt, (cst.Try, getattr(cst, "TryStar", cst.Try))):
            body = self._block(block_statements(stmt.body), env)
            ends = []
            for handler in stmt.handlers:
                start = self._bind(handler, _union(env, body))
                ends.append(self._block(block_statements(handler.body), start))
            if stmt.orelse is not None:
                body = self._block(block_statements(stmt.orelse.body), body)
            ends.append(body)
            merged = ends[0]
            for end in ends[1:]:
                merged = _union(merged, end)
            if stmt.finalbody is not None:
                merged = self._block(block_statements(stmt.finalbody.body), _union(env, merged))
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
            body_end = self._block(block_statements(stmt.body), start)
            breaks, continues = self._loops.pop()
            new_head = head
            for other in [body_end] + continues:
                new_head = _union(new_head, other)
            if new_head == head:
                break
            head = new_head
        after = _union(head, body_end)
        if stmt.orelse is not None:
            after = self._block(block_statements(stmt.orelse.body), after)
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


_PLAIN_TYPES = frozenset({"int", "float", "str", "bool", "bytes"})


def _plain_params(fn: cst.FunctionDef) -> Set[str]:
    """Parameters annotated `int`/`float`/`str`/`bool` or defaulting to a number, string or flag
    (`lambda_reg=0.1`, `epochs: int`): not tensors. `hidden=None` says nothing."""
    params = fn.params
    plain: Set[str] = set()
    for param in list(params.posonly_params) + list(params.params) + list(params.kwonly_params):
        annotation = param.annotation.annotation if param.annotation is not None else None
        default = param.default
        if isinstance(annotation, cst.Name) and annotation.value in _PLAIN_TYPES:
            plain.add(param.name.value)
        elif isinstance(default, (cst.Integer, cst.Float, cst.SimpleString, cst.ConcatenatedString)) or (
            isinstance(default, cst.Name) and default.value in ("True", "False")
        ):
            plain.add(param.name.value)
        elif isinstance(default, cst.UnaryOperation) and isinstance(default.expression, (cst.Integer, cst.Float)):
            plain.add(param.name.value)
    return plain


def _may_skip_ahead(stmt: cst.CSTNode) -> bool:
    """Does `stmt` contain a `continue` (outside nested loops and functions)?"""
    stop = SCOPES + (cst.For, cst.While)
    return any(isinstance(n, cst.Continue) for n in walk(stmt, stop))


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
                if func.attr.value in OBJECT_METHODS:
                    receiver = key_of(func.value)
                    if receiver is not None and receiver != "self":
                        names.add(receiver)
    return names


def _join(classes: List[str]) -> str:
    if not classes:
        return INERT
    if any(c in (GRAPH, UNKNOWN) for c in classes):
        return GRAPH
    if any(c == LEAF for c in classes):
        return LEAF if all(c == LEAF for c in classes) else GRAPH
    return INERT


def _blocks_of(stmt: cst.CSTNode) -> Iterator[_Block]:
    for case in getattr(stmt, "cases", ()) or ():
        yield block_statements(case.body)


def _calls_outside_nested(node: cst.CSTNode) -> List[cst.Call]:
    """Calls in a statement or expression; nested scopes, comprehensions and blocks are left out
    (nested statements are indexed on their own)."""
    return [n for n in walk(node, SCOPES + COMPREHENSIONS + SUITES) if isinstance(n, cst.Call)]


def _yields(node: cst.CSTNode) -> List[cst.Yield]:
    return [n for n in walk(node, SCOPES) if isinstance(n, cst.Yield)]


def _walruses(node: cst.CSTNode) -> List[cst.NamedExpr]:
    return [n for n in walk(node, SCOPES) if isinstance(n, cst.NamedExpr)]


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

    def __init__(self, module: cst.Module, imports: ImportMap, backward_functions: Tuple[str, ...] = (),
                 only: Optional[Set[cst.CSTNode]] = None) -> None:
        """`only`: build the scopes of just these functions and classes (and the module's); the
        others hold nothing GL002 asks about, and no scope reads another but the module's."""
        self.only = only
        self.module = module
        self.imports = imports
        detaching = detaching_functions(module, imports)
        self.reads = ReadCollector(imports, detaching, pure_functions(module, imports, detaching))
        self.reads.stateful = stateful_instances(module, self.reads)
        self.stored_attributes = stored_attributes(module, self.reads)
        self.backward_functions = tuple(backward_functions)
        self.helpers = backward_helpers(module, imports)
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
            if self.only is not None and nested not in self.only:
                continue
            if isinstance(nested, cst.FunctionDef):
                self._build(block_statements(nested.body), nested, param_names(nested), module_scope)
            elif isinstance(nested, cst.ClassDef):
                self._build(block_statements(nested.body), nested, [], module_scope)

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
        if backward.create_graph is not None and not is_false(backward.create_graph):
            return False
        if not is_true(backward.retain_graph):
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
            for later in scope.calls_within(block_statements(loops[-1].body)) + candidates:
                deps = self._deps(later, scope)
                if deps is None:
                    return False  # a backward whose root we cannot read
                reachable |= deps
            for loop in loops:
                carried = scope.carried(loop) & group & reachable
                if carried - scope.reset_after(stmt, loop, group):
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
            after |= scope.statements_within(block_statements(loop.body))
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


_PASS_THROUGH = frozenset({"enumerate", "zip", "reversed", "list", "tuple", "sorted", "iter"})


def _iterated_calls(iterable: cst.BaseExpression) -> List[cst.Call]:
    """The calls whose results a `for` walks: the iterable, or inside `enumerate(...)`/`zip(...)`."""
    if not isinstance(iterable, cst.Call):
        return []
    if isinstance(iterable.func, cst.Name) and iterable.func.value in _PASS_THROUGH:
        found: List[cst.Call] = []
        for arg in iterable.args:
            found += _iterated_calls(arg.value)
        return found
    return [iterable]


def _retain_argument(backward: BackwardCall) -> Optional[cst.Arg]:
    for arg in backward.node.args:
        if arg.value is backward.retain_graph and backward.retain_graph is not None:
            return arg
    return None


def _short(code: str, limit: int = 40) -> str:
    code = " ".join(code.split())
    return code if len(code) <= limit else code[: limit - 3] + "..."


def _retaining_scopes(module: cst.Module, imports: ImportMap) -> Optional[Set[cst.CSTNode]]:
    """The functions and classes holding (at any depth) a backward call whose retain_graph is
    the literal True (keyword or positional); None when the module has no such call. Only such
    a call can be a verdict (`_retain_unneeded`), so only these scopes need building -- most
    modules with a backward never retain, and most functions of those that do hold no retain."""
    holders: Set[cst.CSTNode] = set()
    found = False
    stack: List[Tuple[cst.CSTNode, Tuple[cst.CSTNode, ...]]] = [(module, ())]
    while stack:
        node, around = stack.pop()
        kind = type(node)
        if kind is cst.Call:
            backward = backward_call(node, imports)
            if backward is not None and is_true(backward.retain_graph):
                found = True
                holders.update(around)
        elif kind is cst.FunctionDef or kind is cst.ClassDef:
            around = around + (node,)
        stack.extend((child, around) for child in children(node))
    return holders if found else None


def unnecessary_retains(module: cst.Module, imports: ImportMap, backward_functions: Tuple[str, ...] = ()):
    """Every `retain_graph=True` in the module that no later backward can need."""
    from gradlint.analysis.scalars import _ASSIGNED

    try:
        holders = _retaining_scopes(module, imports)
        if holders is None:
            return []
        return GraphAnalysis(module, imports, backward_functions, holders).unnecessary_retains()
    finally:
        _ASSIGNED.clear()  # keep no tree alive after the file is done

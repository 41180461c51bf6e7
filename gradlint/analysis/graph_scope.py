"""One function (or the module, or a class body) indexed for GL002's retained-graph proof.

`Scope` records every definition of a name with what it reads, where values may escape the function,
the backward-like calls of each statement and the statement structure; it classifies each name as
INERT (no history: constants, factories, detached values, the loop's batch), LEAF (requires grad,
no history), GRAPH (may carry history) or UNKNOWN (from outside the function). Every doubt resolves
towards GRAPH, i.e. towards silence.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.backward import backward_call
from gradlint.analysis.defuse import (
    TRY_TYPES,
    AnalysisView,
    Block,
    Definition,
    Escape,
    Later,
    Loop,
    Place,
    blocks_of,
    calls_outside_nested,
    join_classes,
    may_skip_ahead,
    object_names,
    plain_params,
    walruses_in,
    yields_in,
)
from gradlint.analysis.loop_carry import LoopCarry
from gradlint.analysis.names import dotted
from gradlint.analysis.outliving import lambda_captures, persistent_key
from gradlint.analysis.reaching import ReachingDefinitions
from gradlint.analysis.reads import (
    BUILTINS,
    CONTAINER_STORES,
    GRAPH,
    INERT,
    LEAF,
    LOGGING_METHODS,
    UNKNOWN,
    Reads,
    free_names,
    is_false,
    key_of,
    stores_outside,
    target_keys,
)
from gradlint.analysis.tree import block_statements


class Scope:
    """A function body (or the module, or a class body): definitions, uses, statement structure."""

    def __init__(
        self,
        node: cst.CSTNode,
        body: Block,
        params: List[str],
        analysis: AnalysisView,
        outer: Optional["Scope"],
    ) -> None:
        self.node = node
        self.body = body
        self.params = set(params)
        # Parameters declared or defaulted as plain numbers/strings/flags cannot hold a graph.
        self.plain_params = plain_params(node) if isinstance(node, cst.FunctionDef) else set()
        self.analysis = analysis
        self.outer = outer
        self.defs: Dict[str, List[Definition]] = {}
        self.escapes: List[Escape] = []
        self.places: Dict[cst.CSTNode, Place] = {}
        self.children: Dict[Optional[cst.CSTNode], List[cst.CSTNode]] = {}
        self.defs_at: Dict[cst.CSTNode, List[Definition]] = {}  # statement -> definitions it makes
        self.later_calls: Dict[cst.CSTNode, List[Later]] = {}  # statement -> backward-like calls in it
        self.container_collections: Set[str] = set()  # names appended tensors in this scope
        self.nested_scopes: List[cst.CSTNode] = []
        self._classes: Optional[Dict[str, str]] = None
        self._reaching: Optional[ReachingDefinitions] = None
        # Classes learnt from outside the function before any question is asked: parameters
        # every call site fills with data, `self.x` attributes every method fills with data.
        self.known_params: Dict[str, str] = {}
        self.known_attributes: Dict[str, str] = {}
        # Calls that run `self`'s forward, with the `self.x` attributes every forward sets afresh
        # (`forward_state`): read after such a call, they hold nothing of an earlier iteration.
        self.refreshing: Dict[cst.Call, FrozenSet[str]] = {}
        self.loop_carry = LoopCarry(self)
        self._library: Dict[str, bool] = {}
        self._index_block(body, None, "body", no_grad=False, loop=None)
        self.objects = object_names(body)  # names used as modules/functions: never tensors

    # -- indexing ------------------------------------------------------------------------------
    def _index_block(self, block: Block, parent, part: str, no_grad: bool, loop) -> None:
        for index, stmt in enumerate(block):
            self.places[stmt] = Place(parent, part, block, index)
            self.children.setdefault(parent, []).append(stmt)
            self._index_statement(stmt, no_grad, loop)

    def _index_statement(self, stmt: cst.CSTNode, no_grad: bool, loop) -> None:
        reads = self.analysis.reads
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                self._index_small(small, stmt, no_grad)
            self._note_calls(stmt, stmt)
            captured = lambda_captures(stmt)
            if captured:
                # `hvp = lambda v: grad(kl, params, v)`: whoever calls it may walk what it captured.
                self.escapes.append(Escape("closure", captured, stmt))
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
        if isinstance(stmt, TRY_TYPES):
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
        for block in blocks_of(stmt):
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
                    if stores_outside(target.target):
                        targets = _stored_keys(target.target)
                        self.escapes.append(Escape("store", set(value.keys), stmt, targets=targets))
                    continue
                for key in keys:
                    self._define(key, value, small, no_grad)
                if stores_outside(target.target):
                    self.escapes.append(Escape("store", set(value.keys), stmt, targets=_stored_keys(target.target)))
            self._note_walrus(small.value, small, no_grad)
        elif isinstance(small, cst.AnnAssign):
            if small.value is not None:
                value = reads.reads(small.value)
                for key in target_keys(small.target):
                    self._define(key, value, small, no_grad)
                if stores_outside(small.target):
                    self.escapes.append(Escape("store", set(value.keys), stmt, targets=_stored_keys(small.target)))
        elif isinstance(small, cst.AugAssign):
            value = reads.reads(small.value)
            keys = list(target_keys(small.target))
            for key in keys:
                combined = value.copy()
                combined.keys.add(key)
                combined.kind = None  # `total += x` keeps what `total` held
                self._define(key, combined, small, no_grad)
            if stores_outside(small.target):
                self.escapes.append(Escape("store", set(value.keys), stmt, targets=_stored_keys(small.target)))
        elif isinstance(small, (cst.Return,)):
            if small.value is not None:
                self.escapes.append(Escape("return", reads.reads(small.value).keys, stmt))
        elif isinstance(small, cst.Expr):
            expression = small.value
            if isinstance(expression, cst.Yield):
                inner = expression.value
                if isinstance(inner, cst.From):
                    inner = inner.item
                self.escapes.append(Escape("return", reads.reads(inner).keys if inner is not None else set(), stmt))
            elif isinstance(expression, cst.Call):
                self._index_expression_call(expression, small, stmt, no_grad)
            self._note_walrus(expression, small, no_grad)
        elif isinstance(small, (cst.Global, cst.Nonlocal)):
            self.escapes.append(Escape("global", {item.name.value for item in small.names}, stmt))
        elif isinstance(small, (cst.Import, cst.ImportFrom)):
            pass  # imported modules are inert
        # Yields inside assignments (`x = yield y`) leave through the generator too.
        for node in yields_in(small):
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
        self.escapes.append(Escape("call", set(reads._args(call).keys), stmt, call=call))

    def _note_walrus(self, expr: cst.BaseExpression, small, no_grad: bool) -> None:
        for node in walruses_in(expr):
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
        for call in calls_outside_nested(node):
            later = self.analysis.later_of(call) or self._opaque_later(call)
            if later is not None:
                self.later_calls.setdefault(stmt, []).append(later)

    def _opaque_later(self, call: cst.Call) -> Optional[Later]:
        """A call we cannot see into that is given values which may carry a graph: a function of
        another package or module (`trpo.hessian_vector_product(kl, params)`), or a callable this
        function made from such values (`fvp(v)` after `fvp = make_fvp(kl)`). It may run a
        backward through them, so it counts as a later backward whose roots are what it reads."""
        reads = self.analysis.reads
        roots: Set[str] = set()
        if self.analysis.may_walk(call):
            for arg in call.args:
                found = reads.reads(arg.value)
                if found.kind != INERT:
                    roots |= found.keys
        name = call.func.value if isinstance(call.func, cst.Name) else None
        if name is not None and name not in self.params:
            for definition in self.defs.get(name, ()):
                value = getattr(definition.node, "value", None)
                if isinstance(definition.node, (cst.Assign, cst.AnnAssign)) and isinstance(value, cst.Call):
                    if definition.reads.kind != INERT and not definition.reads.ctors:
                        roots |= definition.reads.keys
        if not roots:
            return None
        return Later(call, None, roots=roots)

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
                new = join_classes([self._definition_class(d) for d in definitions])
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
            if key in self.plain_params:
                return INERT
            return self.known_params.get(key, UNKNOWN)
        if key in self.known_attributes:
            return self.known_attributes[key]
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
            return GRAPH if bool(self.loop_carry.collection_keys(definition.loop_target)) else INERT
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

    def class_or_graph(self, key: str) -> str:
        """The class of `key` while classes are being computed: names not settled count as linked."""
        if self._classes is not None and key in self._classes:
            return self._classes[key]
        return self.class_of(key)

    # -- loops -------------------------------------------------------------------------------
    def collection_keys(self, loop: cst.For) -> Set[str]:
        """Names of tensors built here that `for x in <iter>` walks (see `LoopCarry`)."""
        return self.loop_carry.collection_keys(loop)

    def carried(self, loop: Loop) -> Set[str]:
        """Names the loop body reads before assigning them, that may hold a graph."""
        return self.loop_carry.carried(loop)


    def reaching(self) -> ReachingDefinitions:
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

    def persistent(self, key: str) -> bool:
        """Is `key` a store of values with history that outlives this call (`self.memory`, a
        module-level list the file fills), read here without being assigned?"""
        if key in self.defs or key in self.params:
            return False
        # Appended to or stored into by key: a buffer. (An attribute only ever rebound, `self.h =
        # out`, is rebound again before most reads: it is treated like a parameter.)
        return persistent_key(key, self.analysis.store_attributes, self.analysis.store_globals)

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
    def enclosing(self, stmt: cst.CSTNode) -> List[Tuple[cst.CSTNode, Place]]:
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
        for _node, place in self.enclosing(stmt):
            for later in place.block[place.index + 1 :]:
                if may_skip_ahead(later):
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
        for _node, place in self.enclosing(stmt):
            out.extend(place.block[place.index + 1 :])
            parent = place.parent
            if isinstance(parent, TRY_TYPES):
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

    def loops_around(self, stmt: cst.CSTNode) -> List[Loop]:
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


def _stored_keys(target: cst.BaseExpression) -> Set[str]:
    """`self.x` for `self.x = ...`; the stored-into name for `x[i] = ...` / `obj.y = ...`."""
    keys: Set[str] = set()
    if isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            keys |= _stored_keys(element.value)
        return keys
    if isinstance(target, cst.StarredElement):
        return _stored_keys(target.value)
    if isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name) and target.value.value == "self":
        return {f"self.{target.attr.value}"}
    if isinstance(target, (cst.Attribute, cst.Subscript)):
        return {"<elsewhere>"}
    return keys

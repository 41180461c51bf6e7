"""Which `retain_graph=True` calls keep a graph that no later backward walks (the fact GL002 reads).

For each backward call that retains, `retained.GraphAnalysis.unused_after` is asked about the graph
it keeps, first in the function that holds it. When that function alone does not settle it, the
question moves to where the graph really comes from and goes:

- **Parameters summarised from their call sites** (`call_sites`): a parameter every call site in
  the project fills with data (a loader's batch) is data, not a graph carried in; the proof is
  retried with that knowledge. A retain whose root *is* a parameter (`def update(opt, loss)`) is
  proven at every call site instead: the caller's argument is the graph, and nothing after the
  call may walk it.
- **Trainer classes** (`attribute_flow`): a method of a class whose iteration a driver method runs
  (`optimize()` calling `forward()`, `backward_G()`, `backward_D()`) is proven on that iteration
  inlined, `self.x` attributes followed like variables across the methods.
- **Lightning's `backward` hook**: under automatic optimization Lightning calls it once per
  `training_step`, on a fresh loss; under manual optimization once per `self.manual_backward(...)`,
  each of which is then proven in its method.

Any doubt (a call site we cannot read, a method reached in a way we cannot inline) leaves the
retain alone.
"""

from __future__ import annotations

import os

from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Set, Tuple

import libcst as cst

from gradlint.analysis.attribute_flow import (
    Iteration,
    assigned_attributes,
    attributes_walked_elsewhere,
    class_methods,
    drivers,
    iteration,
    mentioned_attributes,
    method_owners,
    self_call_name,
)
from gradlint.analysis.backward import BackwardCall, backward_call, unknown_arguments
from gradlint.analysis.call_sites import CallSite, CallSiteIndex, ParsedFile
from gradlint.analysis.defuse import Definition, join_classes, plain_params
from gradlint.analysis.forward_state import forward_calls, refreshed_attributes
from gradlint.analysis.graph_params import graph_params, made_from_parameters
from gradlint.analysis.graph_scope import Scope
from gradlint.analysis.helpers import detaching_functions, own_nodes, stores_history_on_self
from gradlint.analysis.inherited import Inheritance, inherited_calls
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.outliving import OpaqueCalls
from gradlint.analysis.returns import history_free_imports, history_free_locals, overridden_methods
from gradlint.analysis.reads import INERT, LEAF, is_false, is_true, key_of, param_names
from gradlint.analysis.retained import GraphAnalysis
from gradlint.analysis.tree import SCOPES, block_statements, children, preorder, typed, walk

MAX_SUMMARY_DEPTH = 2  # callers of callers whose parameters are summarised in turn


@dataclass(frozen=True)
class Verdict:
    """A `retain_graph=True` the analysis proved unnecessary."""

    call: BackwardCall
    retain_arg: cst.Arg
    root: str  # source text of the root tensor


class RetainProver:
    """Decides each retaining backward of one file, looking at callers and classes as needed."""

    def __init__(
        self,
        module: cst.Module,
        imports: ImportMap,
        path: str,
        backward_functions: Tuple[str, ...],
        project_root: Optional[str],
        holders: Set[cst.CSTNode],
    ) -> None:
        self.module = module
        self.imports = imports
        self.backward_functions = backward_functions
        self.project_root = project_root
        self.walkers: List[OpaqueCalls] = [OpaqueCalls(imports, path, project_root)]
        self.index = CallSiteIndex(path, module, imports, project_root)
        history_free = history_free_imports(module, imports, self.walkers[0])
        history_free |= history_free_locals(module, imports, history_free)
        overridden = overridden_methods(
            module, history_free | detaching_functions(module, imports), self.index.defined_elsewhere
        )
        self.analysis = GraphAnalysis(
            module, imports, backward_functions, holders, self.walkers[0], history_free - overridden, overridden
        )
        self.inheritance = Inheritance(self.index.here, project_root)
        self._analyses: Dict[str, GraphAnalysis] = {}
        self._owners: Dict[str, Dict[cst.FunctionDef, cst.ClassDef]] = {}
        self._summaries: Dict[cst.FunctionDef, Dict[str, str]] = {}
        self._summarising: Set[cst.FunctionDef] = set()
        self._step_closures: Dict[str, bool] = {}  # function name -> used only as `opt.step(name)`

    # -- entry ---------------------------------------------------------------------------------
    def verdicts(self) -> List[Verdict]:
        found = []
        for backward, scope, stmt in self.analysis.retains():
            arg = _retain_argument(backward)
            if arg is None or backward.tensor is None:
                continue
            if self._needless(backward, scope, stmt):
                found.append(Verdict(backward, arg, _short(self.module.code_for_node(backward.tensor))))
        return found

    def _needless(self, backward: BackwardCall, scope: Scope, stmt: cst.CSTNode) -> bool:
        analysis = self.analysis
        assert backward.tensor is not None
        fn = scope.node if isinstance(scope.node, cst.FunctionDef) else None
        manual = fn is not None and (
            (backward.kind == "manual" and fn.name.value == "training_step") or self._step_closure(fn)
        )
        root_keys = set(analysis.reads.reads(backward.tensor).keys)
        param = _parameter_root(backward.tensor, scope)
        if param is not None and fn is not None:
            return self._parameter_rooted(backward, scope, stmt, fn, param)
        owner = self._owner(self.index.here, fn) if fn is not None else None
        if fn is not None and made_from_parameters(scope, backward.tensor, backward.node):
            if self.index.sites(fn, owner) is None:
                return False  # as for a root that is the parameter: the unseen callers' graph
        if not _held_elsewhere(backward.tensor, scope) and analysis.unused_after(
            scope, stmt, backward.node, root_keys, manual=manual
        ):
            if fn is None or self._callers_leave_unwalked(scope, root_keys, backward.node, fn, owner, 0):
                return True
            return False  # a caller's graph that a later backward of the caller walks again
        if fn is None:
            return False
        seeded = self._seeded(analysis, fn, owner, scope.outer, 0) if _params_matter(scope, stmt, root_keys) else None
        if seeded is not None and not _held_elsewhere(backward.tensor, seeded):
            if analysis.unused_after(seeded, stmt, backward.node, root_keys, manual=manual):
                return self._callers_leave_unwalked(seeded, root_keys, backward.node, fn, owner, 0)
        if owner is not None:
            configured = self._constructor_attributes(owner)
            refreshing = self._forward_refreshes(fn, owner, scope.loops_around(stmt))
            if configured or refreshing:
                known = analysis.build_scope(fn, block_statements(fn.body), param_names(fn), scope.outer)
                known.known_params = dict(self._summary(fn, owner, 0))
                known.known_attributes = configured
                known.refreshing = refreshing
                if not _held_elsewhere(backward.tensor, known) and analysis.unused_after(
                    known, stmt, backward.node, root_keys, manual=manual
                ):
                    return self._callers_leave_unwalked(known, root_keys, backward.node, fn, owner, 0)
            return self._in_iterations(backward, fn, owner)
        return False

    def _step_closure(self, fn: cst.FunctionDef) -> bool:
        """`_only_a_step_closure`, once per name: a file may hold hundreds of retaining backwards
        (torch's autograd tests), each asking about its function."""
        name = fn.name.value
        found = self._step_closures.get(name)
        if found is None:
            found = self._step_closures[name] = _only_a_step_closure(fn, self.module)
        return found

    def _constructor_attributes(self, owner: cst.ClassDef) -> Dict[str, str]:
        """`self.x` attributes only `__init__` assigns (`self.gama = gama`, `self.device = ...`),
        with no history there (what the constructor is given is configuration): every method
        reads the same settings, never a graph."""
        methods = class_methods(owner)
        init = methods.get("__init__")
        if init is None:
            return {}
        elsewhere: Set[str] = set()
        for name, method in methods.items():
            if name != "__init__":
                elsewhere |= assigned_attributes(method)
        stored = self.analysis.store_attributes | self.analysis.stored_attributes
        out: Dict[str, str] = {}
        for key in assigned_attributes(init):
            if key.count(".") != 1 or key in elsewhere or key.split(".")[1] in stored:
                continue
            klass = self._class_in_method(owner, init, key)
            if klass in (INERT, LEAF):
                out[key] = klass
        return out

    def _forward_refreshes(
        self, fn: cst.FunctionDef, owner: cst.ClassDef, loops: list
    ) -> Dict[cst.Call, FrozenSet[str]]:
        """Calls in `fn` that run the module's own forward (`model(x)` after `model = self.train()`),
        with the `self.x` attributes that the loops around the backward (`loops`) read, that `fn`
        does not assign and that every forward sets afresh (`forward_state`)."""
        if not loops:
            return {}  # only what a loop carries into the next iteration is in question
        calls = forward_calls(fn, lambda name: self.inheritance.defines(owner, name))
        if not calls or "__call__" in class_methods(owner) or not self.inheritance.derives_from(owner, "Module"):
            return {}
        assigned = assigned_attributes(fn)
        methods = class_methods(owner)
        read = {
            text.split(".")[1]
            for node in walk(loops[0].body, SCOPES)
            if isinstance(node, cst.Attribute)
            for text in [dotted(node)]
            if text is not None and text.count(".") == 1 and text.startswith("self.") and text not in assigned
        } - set(methods)
        fresh = refreshed_attributes(read, self.index.here, self.index.files_mentioning)
        if not fresh:
            return {}
        keys = frozenset(f"self.{name}" for name in fresh)
        return {call: keys for call in calls}

    # -- a retain whose root is a parameter ----------------------------------------------------
    def _parameter_rooted(
        self, backward: BackwardCall, scope: Scope, stmt: cst.CSTNode, fn: cst.FunctionDef, param: str
    ) -> bool:
        if not self.analysis.unused_after(scope, stmt, backward.node, {param}):
            return False
        owner = self._owner(self.index.here, fn)
        hook = owner is not None and fn.name.value == "backward"
        if hook and owner is not None and self.inheritance.derives_from(owner, "LightningModule"):
            return self._lightning_hook(owner, fn)
        sites = self.index.sites(fn, owner)
        if not sites:
            return False
        for site in sites:
            argument = site.arguments.get(param)
            if argument is None or not self._proven_at(site, argument):
                return False
        return True

    def _proven_at(
        self, site: CallSite, argument: cst.BaseExpression, depth: int = 0, walked_only: bool = False
    ) -> bool:
        """Is the graph the caller passes walked by nothing after the call (later statements, the
        next round of a loop around the call, and, through the caller's own parameters, its
        callers)? `walked_only`: the graph is the caller's input to the function, not one the
        function hands back: only a later backward of the caller counts, not where else the
        caller's values go."""
        located = self._site_scope(site, depth)
        if located is None:
            return False
        analysis, scope = located
        stmt = analysis.statement_holding(scope, site.call)
        if stmt is None:
            return False
        keys = set(analysis.reads.reads(argument).keys)
        if not analysis.unused_after(scope, stmt, site.call, keys, probe=True, walked_only=walked_only):
            return False
        caller = scope.node
        if not isinstance(caller, cst.FunctionDef) or not graph_params(scope, keys, site.call):
            return True
        if site.file is not self.index.here:
            return False  # the caller's callers are looked for from the linted file only
        owner = self._owner(site.file, caller)
        return self._callers_leave_unwalked(scope, keys, site.call, caller, owner, depth + 1)

    def _callers_leave_unwalked(
        self,
        scope: Scope,
        root_keys: Set[str],
        at: cst.CSTNode,
        fn: cst.FunctionDef,
        owner: Optional[cst.ClassDef],
        depth: int,
    ) -> bool:
        """A graph kept in `fn` that reaches into a parameter (`feats` a caller computed with its
        encoder and passes in) is part of the caller's graph too: a later backward there (the next
        call with the same features, the next round of a loop over heads, code after the call)
        walks it again. Every call site that passes such a parameter a value that may carry a graph
        must leave it unwalked after the call. Parameters every call site fills with data (loader
        batches, detached values) do not count; neither do calls we cannot see (no call site known:
        what a function is handed is taken to be its own input)."""
        params = graph_params(scope, root_keys, at)
        if not params:
            return True
        if depth > MAX_SUMMARY_DEPTH:
            return False
        sites = self.index.sites(fn, owner)
        if sites is None:
            return True
        for site in sites:
            located = None
            for name in sorted(params):
                argument = site.arguments.get(name)
                if argument is None:
                    continue  # its default: not a graph the caller holds
                if located is None:
                    located = self._site_scope(site, depth + 1)
                if located is not None and _argument_class(located[0], located[1], argument) in (INERT, LEAF):
                    continue
                if not self._proven_at(site, argument, depth, walked_only=True):
                    return False
        return True

    # -- parameters summarised from call sites -------------------------------------------------
    def _summary(self, fn: cst.FunctionDef, owner: Optional[cst.ClassDef], depth: int) -> Dict[str, str]:
        """Parameters of `fn` that every call site fills with a value without history."""
        known = self._summaries.get(fn)
        if known is not None:
            return known
        if depth > MAX_SUMMARY_DEPTH or fn in self._summarising:
            return {}
        self._summarising.add(fn)
        try:
            found = self._summarise(fn, owner, depth)
        finally:
            self._summarising.discard(fn)
        self._summaries[fn] = found
        return found

    def _summarise(self, fn: cst.FunctionDef, owner: Optional[cst.ClassDef], depth: int) -> Dict[str, str]:
        names = param_names(fn)
        if owner is not None and names:
            names = names[1:]
        plain = plain_params(fn)
        if all(name in plain for name in names):
            return {}  # nothing a call site could teach
        sites = self.index.sites(fn, owner)
        if not sites:
            return {}
        defaults = _defaults(fn)
        classes: Dict[str, List[str]] = {name: [] for name in names}
        for site in sites:
            located = self._site_scope(site, depth + 1)
            for name in names:
                argument = site.arguments.get(name)
                if argument is None:
                    classes[name].append(INERT if _plain_default(defaults.get(name)) else "?")
                elif located is None:
                    classes[name].append("?")
                else:
                    classes[name].append(_argument_class(located[0], located[1], argument))
        return {
            name: join_classes(found)
            for name, found in classes.items()
            if found and all(c in (INERT, LEAF) for c in found)
        }

    def _seeded(
        self, analysis: GraphAnalysis, fn: cst.FunctionDef, owner: Optional[cst.ClassDef], outer, depth: int
    ) -> Optional[Scope]:
        """A fresh scope of `fn` whose parameters carry what their call sites pass; None when the
        call sites teach nothing."""
        known = self._summary(fn, owner, depth)
        if not known:
            return None
        seeded = analysis.build_scope(fn, block_statements(fn.body), param_names(fn), outer)
        seeded.known_params = dict(known)
        return seeded

    def _site_scope(self, site: CallSite, depth: int) -> Optional[Tuple[GraphAnalysis, Scope]]:
        """The analysis of the caller's file and the scope the call is in (its parameters seeded
        from its own callers, a level further)."""
        analysis = self._analysis_for(site.file)
        scope = analysis.scope_of_chain(site.chain)
        node = scope.node
        if isinstance(node, cst.FunctionDef) and depth <= MAX_SUMMARY_DEPTH:
            owner = self._owner(site.file, node)
            seeded = self._seeded(analysis, node, owner, scope.outer, depth)
            if seeded is not None:
                return analysis, seeded
        return analysis, scope

    def _analysis_for(self, parsed: ParsedFile) -> GraphAnalysis:
        """One analysis per file (this file's own for it), scopes built as callers are asked about."""
        if parsed is self.index.here:
            return self.analysis
        found = self._analyses.get(parsed.path)
        if found is None:
            walker = OpaqueCalls(parsed.imports, parsed.path, self.project_root)
            self.walkers.append(walker)
            found = GraphAnalysis(parsed.module, parsed.imports, self.backward_functions, set(), walker)
            self._analyses[parsed.path] = found
        return found

    def _owner(self, parsed: ParsedFile, fn: cst.FunctionDef) -> Optional[cst.ClassDef]:
        owners = self._owners.get(parsed.path)
        if owners is None:
            owners = self._owners[parsed.path] = method_owners(parsed.module)
        return owners.get(fn)

    # -- trainer classes: one iteration inlined ------------------------------------------------
    def _in_iterations(self, backward: BackwardCall, fn: cst.FunctionDef, owner: cst.ClassDef) -> bool:
        methods = class_methods(owner)
        if methods.get(fn.name.value) is not fn:
            return False
        backward_methods = frozenset(n for n in methods if n in self.analysis.helpers)
        roots = drivers(owner, fn.name.value)
        if not roots:
            return False
        for driver in roots:
            inlined = iteration(owner, driver, backward_methods)
            if inlined is None or not self._iteration_proves(backward, owner, methods, inlined, backward_methods):
                return False
        return True

    def _iteration_proves(
        self,
        backward: BackwardCall,
        owner: cst.ClassDef,
        methods: Dict[str, cst.FunctionDef],
        inlined: Iteration,
        backward_methods: FrozenSet[str],
    ) -> bool:
        analysis = self.analysis
        synthetic = inlined.function
        for node in walk(synthetic.body, SCOPES):
            name = self_call_name(node)
            if name in backward_methods and isinstance(node, cst.Call) and node.args:
                analysis.extra_roots[node] = mentioned_attributes(methods[name], methods)
        for _, name in inherited_calls(synthetic, methods):
            if self.inheritance.may_run_backward(owner, name):
                return False  # a base class's method that may walk the kept attributes
        outer = analysis.module_scope()
        scope = analysis.build_scope(synthetic, block_statements(synthetic.body), param_names(synthetic), outer)
        scope.known_params = dict(self._summary(methods[inlined.driver], owner, 0))
        scope.known_attributes = self._attribute_classes(owner, methods, inlined, synthetic)
        stmt = analysis.statement_holding(scope, backward.node)
        assert backward.tensor is not None
        if stmt is None or _held_elsewhere(backward.tensor, scope):
            return False
        inside = {methods[n] for n in inlined.inlined}
        walked = attributes_walked_elsewhere(self.module, self.imports, inside, analysis.helpers)
        assigned = assigned_attributes(synthetic)
        exempt = frozenset(k for k in assigned if k.count(".") == 1 and k.split(".")[1] not in walked)
        root_keys = set(analysis.reads.reads(backward.tensor).keys)
        return analysis.unused_after(scope, stmt, backward.node, root_keys, exempt=exempt)

    def _attribute_classes(
        self, owner: cst.ClassDef, methods: Dict[str, cst.FunctionDef], inlined: Iteration, synthetic: cst.FunctionDef
    ) -> Dict[str, str]:
        """Classes of the `self.x` attributes the iteration reads but does not assign: what the
        class's other methods put there. Attributes of attributes (`self.opt.lambda_l1`) that no
        method but `__init__` assigns are configuration (like a module's parameters)."""
        inside = assigned_attributes(synthetic)
        by_method = {name: assigned_attributes(fn) for name, fn in methods.items()}
        refreshed = {k for name, keys in by_method.items() if name != "__init__" for k in keys}
        read = {
            text
            for node in walk(synthetic.body, SCOPES)
            if isinstance(node, cst.Attribute)
            for text in [dotted(node)]
            if text is not None and text.startswith("self.")
        }
        out: Dict[str, str] = {}
        stored = self.analysis.stored_attributes
        for key in read - inside:
            parts = key.split(".")
            if parts[1] in self.analysis.store_attributes:
                continue  # a buffer other methods append to: whatever `__init__` put there first
            if len(parts) > 2:
                head = ".".join(parts[:2])
                if parts[1] not in stored and not any(k == head or k.startswith(head + ".") for k in refreshed):
                    out[key] = LEAF
                continue
            writers = [name for name, keys in by_method.items() if key in keys and name not in inlined.inlined]
            if not writers:
                continue
            classes = [self._class_in_method(owner, methods[name], key) for name in writers]
            if all(c in (INERT, LEAF) for c in classes):
                out[key] = join_classes(classes)
        return out

    def _class_in_method(self, owner: cst.ClassDef, fn: cst.FunctionDef, key: str) -> str:
        analysis = self.analysis
        scope = analysis.scope_of_chain(_chain_to(self.module, fn))
        if fn.name.value == "__init__":
            # Built once, before training: what the constructor is given is configuration.
            seeded = analysis.build_scope(fn, block_statements(fn.body), param_names(fn), scope.outer)
            seeded.known_params = {name: LEAF for name in param_names(fn)[1:]}
            scope = seeded
        else:
            scope = self._seeded(analysis, fn, owner, scope.outer, 0) or scope
        return scope.class_of(key) if key in scope.defs else "?"

    # -- Lightning's backward hook -----------------------------------------------------------------
    def _lightning_hook(self, owner: cst.ClassDef, hook: cst.FunctionDef) -> bool:
        methods = class_methods(owner)
        reads = self.analysis.reads
        for name, fn in methods.items():
            if name != "__init__" and any(stores_history_on_self(n, reads) for n in own_nodes(fn)):
                return False  # a graph kept on the module from one step to the next
        calls = [
            (fn, node)
            for fn in methods.values()
            if fn is not hook
            for node in own_nodes(fn)
            if isinstance(node, cst.Call) and backward_call(node, self.imports) is not None
        ]
        if not _manual_optimization(owner):
            # Lightning runs training_step, then this hook on the loss it returned: a fresh graph.
            return not calls
        manual = [(fn, node) for fn, node in calls if _backward_kind(node, self.imports) == "manual"]
        if not manual or len(manual) != len(calls):
            return False
        for fn, node in manual:
            found = backward_call(node, self.imports)
            if found is None or found.tensor is None or unknown_arguments(node):
                return False
            analysis = self.analysis
            scope = analysis.scope_of_chain(_chain_to(self.module, fn))
            stmt = analysis.statement_holding(scope, node) if scope.node is fn else None
            if stmt is None:
                return False
            keys = set(analysis.reads.reads(found.tensor).keys)
            if not analysis.unused_after(scope, stmt, node, keys, manual=fn.name.value == "training_step"):
                return False
        return True


def _backward_kind(call: cst.Call, imports: ImportMap) -> str:
    found = backward_call(call, imports)
    return found.kind if found is not None else ""


def _manual_optimization(owner: cst.ClassDef) -> bool:
    """`self.automatic_optimization = False` anywhere in the class, or a property returning False."""
    for node in walk(owner.body):
        if isinstance(node, cst.Assign) and is_false(node.value):
            if any(dotted(t.target) == "self.automatic_optimization" for t in node.targets):
                return True
        if isinstance(node, cst.FunctionDef) and node.name.value == "automatic_optimization":
            return any(isinstance(n, cst.Return) and n.value is not None and is_false(n.value) for n in walk(node.body))
    return False


def _chain_to(module: cst.Module, target: cst.CSTNode) -> Tuple[cst.CSTNode, ...]:
    """The functions and classes around `target`, outermost first, `target` included."""
    stack: List[Tuple[cst.CSTNode, Tuple[cst.CSTNode, ...]]] = [(module, ())]
    while stack:
        node, chain = stack.pop()
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            chain = chain + (node,)
            if node is target:
                return chain
        stack.extend((child, chain) for child in children(node))
    return ()


def _params_matter(scope: Scope, stmt: cst.CSTNode, root_keys: Set[str]) -> bool:
    """Could knowing the parameters change the proof? Only when one flows into the graph or is
    carried by a loop around the backward."""
    params = scope.params - scope.plain_params
    if scope.closure(root_keys) & params:
        return True
    return any(scope.carried(loop) & params for loop in scope.loops_around(stmt))


def _argument_class(analysis: GraphAnalysis, scope: Scope, argument: cst.BaseExpression) -> str:
    """INERT/LEAF/GRAPH of what a call site passes, in the caller's scope."""
    reads = analysis.reads.reads(argument)
    definition = Definition("<argument>", reads, argument)
    return scope.definition_class(definition, [scope.class_of(k) for k in reads.keys])


def _defaults(fn: cst.FunctionDef) -> Dict[str, Optional[cst.BaseExpression]]:
    params = fn.params
    every = list(params.posonly_params) + list(params.params) + list(params.kwonly_params)
    return {p.name.value: p.default for p in every}


def _plain_default(default: Optional[cst.BaseExpression]) -> bool:
    return isinstance(default, (cst.Integer, cst.Float, cst.SimpleString)) or (
        isinstance(default, cst.Name) and default.value in ("None", "True", "False")
    )


def _parameter_root(tensor: cst.BaseExpression, scope: Scope) -> Optional[str]:
    """The parameter a backward starts from (`loss.backward()` in `def update(opt, loss)`), when
    the function never rebinds it."""
    if isinstance(tensor, cst.Name) and tensor.value in scope.params and tensor.value not in scope.defs:
        return tensor.value
    return None


def _held_elsewhere(tensor: cst.BaseExpression, scope: Scope) -> bool:
    """A root the function did not compute (a parameter, an attribute, a loop's element)."""
    base = tensor
    while isinstance(base, cst.Subscript):
        base = base.value
    if not isinstance(base, (cst.Name, cst.Attribute)):
        return False
    key = key_of(base)
    if key is None or key not in scope.defs:
        return True
    return any(d.loop_target is not None for d in scope.defs[key])


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
    order, ends, _ = preorder(module)  # one pass; the defs around a node hold it in their range
    around: List[Tuple[int, cst.CSTNode]] = []  # (end of its subtree, def or class), innermost last
    for index, node in enumerate(order):
        while around and around[-1][0] <= index:
            around.pop()
        kind = type(node)
        if kind is cst.Call:
            backward = backward_call(node, imports)  # type: ignore[arg-type]
            if backward is not None and is_true(backward.retain_graph):
                found = True
                holders.update(n for _, n in around)
        elif kind is cst.FunctionDef or kind is cst.ClassDef:
            around.append((ends[index], node))
    return holders if found else None


def unnecessary_retains(
    module: cst.Module,
    imports: ImportMap,
    backward_functions: Tuple[str, ...] = (),
    path: str = "-",
    project_root: Optional[str] = None,
    consulted: Optional[Set[str]] = None,
) -> List[Verdict]:
    """Every `retain_graph=True` in the module that no later backward can need. `path` and
    `project_root` locate the file's callers in the project; the project files searched for them
    are added to `consulted` (the verdicts depend on those files too)."""
    from gradlint.analysis.scalars import _ASSIGNED

    try:
        holders = _retaining_scopes(module, imports)
        if holders is None:
            return []
        prover = RetainProver(module, imports, path, tuple(backward_functions), project_root, holders)
        found = prover.verdicts()
        if consulted is not None:
            consulted.update(prover.index.consulted)
            here = os.path.abspath(path)
            for walker in prover.walkers:
                consulted.update(p for p in walker.consulted if os.path.abspath(p) != here)
        return found
    finally:
        _ASSIGNED.clear()  # scalars' memo of assigned names: keep no tree alive after the file is done


def _only_a_step_closure(fn: cst.FunctionDef, module: cst.Module) -> bool:
    """Is `fn` used only as an optimizer's step closure (`opt.step(closure)`, `step(closure=...)`),
    its name read nowhere else? The optimizer calls it and reads what it returns as a number
    (LBFGS's line search, `float(loss)`), never running a backward on it: what it returns is not
    walked again, as with Lightning's manual `training_step`."""
    name = fn.name.value
    named = closures = defined = 0
    # The module's names, defs and calls (kept with its index), by exact type: LibCST's node
    # classes are final, and isinstance on them goes through ABCMeta.
    for node in typed(module, cst.Name, cst.FunctionDef, cst.Call):
        kind = type(node)
        if kind is cst.Name and node.value == name:  # type: ignore[attr-defined]
            named += 1
        elif kind is cst.FunctionDef and node.name.value == name:  # type: ignore[attr-defined]
            defined += 1  # each `def closure():` (one per training function, say) names it once
        elif kind is cst.Call and isinstance(node.func, cst.Attribute) and node.func.attr.value == "step":  # type: ignore[attr-defined]
            for arg in node.args:  # type: ignore[attr-defined]
                if isinstance(arg.value, cst.Name) and arg.value.value == name and not arg.star:
                    if arg.keyword is None:
                        closures += 1
                    elif arg.keyword.value == "closure":
                        closures += 1
                        defined += name == "closure"  # the keyword `closure=` is a name too
    return closures > 0 and named == closures + defined

"""Training-loop facts: which calls step an optimizer, clear gradients or run a backward pass.

One layer answers these questions for every rule, from the syntax alone:

* what an object is (`kind_of`): an optimizer, a learning-rate scheduler, a GradScaler, a DeepSpeed
  engine (whose `step()` clears for you), an EMA/SWA helper or an RL environment, known from how it
  was built (`torch.optim.AdamW(...)`, `get_scheduler(...)`, `deepspeed.initialize(...)`,
  `accelerator.prepare(...)`, `self.optimizers()`) or, failing that, from a name that says so;
* what one call does (`call_effects`): a list of `Event`s (backward / step / clear, naming the
  optimizer by its expression text, e.g. `self.opt_g`), or an `Inline` request for a helper function
  whose body the control-flow layer should follow (same module, `self.` methods, or project modules
  resolved by `gradlint.analysis.project`).

Precision first: something that cannot be identified as an optimizer is never stepped, and a call the
analysis cannot see into that might clear gradients is taken to clear them.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import libcst as cst

from gradlint.analysis.backward import backward_call
from gradlint.analysis.names import ImportMap, dotted

# Kinds of objects whose methods matter.
OPTIMIZER = "optimizer"
SCHEDULER = "scheduler"
SCALER = "scaler"
ENGINE = "engine"  # DeepSpeed engine: engine.step() steps *and* clears
OTHER = "other"  # EMA/SWA helpers, environments, anything known not to be an optimizer

ALL = "*"  # target of a clear that clears every optimizer (model.zero_grad(), p.grad = None)

BACKWARD = "backward"
STEP = "step"
CLEAR = "clear"

KNOWN_OPTIMIZERS = frozenset(
    """SGD Adam AdamW Adamax Adagrad Adadelta RMSprop Rprop ASGD NAdam RAdam LBFGS SparseAdam Adafactor
    Lion LAMB Lamb FusedAdam FusedLAMB FusedSGD DeepSpeedCPUAdam AdamW8bit Adam8bit PagedAdamW
    PagedAdamW8bit SGDW AdaBelief Ranger Shampoo Muon SophiaG Prodigy DAdaptAdam Novograd Adan
    ZeroRedundancyOptimizer""".split()
)
_SCHEDULER_FACTORIES = re.compile(
    r"(^|\.)(get_\w*schedul\w*|\w*Scheduler\w*|\w*LR|LambdaLR|OneCycleLR|"
    r"ReduceLROnPlateau|SequentialLR|ChainedScheduler|SWALR)$"
)
_SCALER_FACTORIES = re.compile(r"(^|\.)(GradScaler|ShardedGradScaler|LossScaler\w*)$")
_OTHER_FACTORIES = re.compile(
    r"(^|\.)(\w*EMA\w*|\w*Ema\w*|ExponentialMovingAverage|AveragedModel|make|"
    r"make_env|make_vec_env|SyncVectorEnv|AsyncVectorEnv)$"
)
# opt, optim, optimizer, optG, opt_d, optimizer2, g_optim, d_opt, generator_optimizer, OPTIMIZER
_OPTIMIZER_NAME = re.compile(
    r"^(opt|optim|optimi[sz]er|OPT|OPTIM|OPTIMI[SZ]ER)([_0-9].*|[A-Z].*)?$|_(opt|optim)$|optimi[sz]er|Optimi[sz]er"
    r"|OPTIMI[SZ]ER|_OPT$|_OPTIM$"
)
# Lower-cased name fragments that say "not an optimizer", checked before the optimizer pattern.
_NOT_OPTIMIZER_HINTS = (
    ("sched", SCHEDULER),
    ("lr_", SCHEDULER),
    ("warmup", SCHEDULER),
    ("scaler", SCALER),
    ("engine", ENGINE),
    ("ema", OTHER),
    ("swa", OTHER),
    ("averag", OTHER),
    ("env", OTHER),
)
# Method names that may step an optimizer or run a backward pass.
_STEPPY_METHODS = frozenset({"step", "backward", "manual_backward", "optimizer_step"})
# Names of project helpers that may step or run a backward.
_STEPPY_NAME = re.compile(r"step|train|backward|update|optim|fit|learn|epoch|batch", re.IGNORECASE)
# Methods on a `.grad` tensor that wipe it.
_GRAD_WIPES = frozenset({"zero_", "detach_", "fill_", "mul_"})
# Builtins and calls that never touch gradients, even when handed an optimizer.
_HARMLESS_CALLS = frozenset(
    """print len range enumerate zip isinstance type str int float bool list dict tuple set min max sum
    abs round sorted reversed getattr hasattr id repr format iter next any all map filter super""".split()
)
# Methods that read an optimizer or model they are handed, never clear it.
_HARMLESS_METHODS = frozenset(
    """unscale_ clip_grad_norm_ clip_grad_value_ log log_dict add_scalar add_scalars info debug warning
    state_dict load_state_dict add_param_group save save_state watch append extend toggle_optimizer
    untoggle_optimizer clip_gradients unscale_gradients lr_schedulers optimizers train eval to cuda cpu
    parameters named_parameters modules children""".split()
)
# Top-level packages whose functions are not the project's own helpers.
KNOWN_LIBRARIES = frozenset(
    """torch torchvision torchaudio torchtext numpy np scipy sklearn pandas pd matplotlib plt PIL cv2
    tqdm wandb mlflow tensorboard tensorboardX logging os sys math random time json yaml re copy
    collections itertools functools typing dataclasses pathlib argparse pickle datetime warnings
    contextlib shutil glob transformers accelerate lightning pytorch_lightning deepspeed apex timm
    einops datasets evaluate gym gymnasium hydra omegaconf rich click fairscale peft diffusers
    huggingface_hub safetensors jax flax optax tensorflow keras torch_optimizer bitsandbytes bnb
    lion_pytorch adabelief_pytorch ranger schedulefree prodigyopt dadaptation muon torch_xla
    horovod hvd torchmetrics torch_geometric dgl mmcv mmengine ignite""".split()
)
# Names of unresolved helpers that suggest they touch gradients or the optimizer.
_MIGHT_CLEAR_NAME = re.compile(r"zero|clear|reset|wipe|grad|optim|step|update|train|backward", re.IGNORECASE)
_GRAD_CLEAR_METHOD = re.compile(r"(zero|clear|reset|drop|free|wipe)_?\w*grad|grad\w*_(zero|clear|reset)", re.IGNORECASE)
_MODEL_NAME = re.compile(r"model|net|module|params|parameters", re.IGNORECASE)


def last_part(text: str) -> str:
    return text.rsplit(".", 1)[-1]


def norm(text: str) -> str:
    """Expression text without whitespace, so `( i + 1 )` and `(i+1)` compare equal."""
    return re.sub(r"\s+", "", text)


def name_kind(text: str) -> Optional[str]:
    """What an object's name says it is, or None when the name says nothing."""
    base = last_part(text)
    lower = base.lower()
    if _OPTIMIZER_NAME.search(base) and not any(h in lower for h, _ in _NOT_OPTIMIZER_HINTS[:2]):
        return OPTIMIZER
    for hint, kind in _NOT_OPTIMIZER_HINTS:
        if hint in lower:
            return kind
    return None


# ---------------------------------------------------------------------------------------------
# Events and inlining requests
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Something a call does to gradients.

    `chain` is the call path to it: the call sites of helpers (outermost first) and last the node
    itself, each paired with whether it lies in the analysed file (other files' nodes have no
    position there).
    """

    kind: str  # BACKWARD | STEP | CLEAR
    target: str  # the optimizer's text for STEP/CLEAR (ALL: every optimizer); "" for BACKWARD
    chain: Tuple[Tuple[cst.CSTNode, bool], ...]

    @property
    def node(self) -> cst.CSTNode:
        return self.chain[-1][0]

    def local_node(self) -> cst.CSTNode:
        """The innermost node of the chain that lies in the analysed file."""
        for node, local in reversed(self.chain):
            if local:
                return node
        return self.chain[0][0]


@dataclass(frozen=True)
class Inline:
    """Follow a helper's body at this call: `scope` is the helper's scope, `site` the call."""

    body: cst.BaseSuite
    scope: "Scope"
    site: cst.CSTNode
    key: Tuple[int, int]  # (id of the module facts, id of the function) for the recursion guard


Effect = Union[Event, Inline]


# ---------------------------------------------------------------------------------------------
# Per-module facts
# ---------------------------------------------------------------------------------------------


@dataclass
class ClassInfo:
    methods: Dict[str, cst.FunctionDef]
    bases: List[str]
    manual_optimization: bool = False  # Lightning: `self.automatic_optimization = False`


@dataclass
class ModuleFacts:
    """What one module defines and binds: computed once per parsed module."""

    module: cst.Module
    path: str
    imports: ImportMap
    kinds: Dict[str, str] = field(default_factory=dict)  # expression text -> kind, from assignments
    functions: Dict[str, cst.FunctionDef] = field(default_factory=dict)  # module-level defs
    # (id of the enclosing def or None, name) -> def: nested defs resolve where they are visible
    defs: Dict[Tuple[Optional[int], str], cst.FunctionDef] = field(default_factory=dict)
    parent: Dict[int, Optional[cst.FunctionDef]] = field(default_factory=dict)  # def id -> enclosing def
    classes: Dict[str, ClassInfo] = field(default_factory=dict)
    # (loop, name of its class, the def it is in)
    loops: List[Tuple[cst.CSTNode, Optional[str], Optional[cst.FunctionDef]]] = field(default_factory=list)
    sources: Dict[str, set] = field(default_factory=dict)  # module text -> optimizers built on it
    instances: Dict[str, str] = field(default_factory=dict)  # `trainer` -> `Trainer` for trainer = Trainer()
    star_import: bool = False
    _relevant: Dict[int, bool] = field(default_factory=dict)
    _locals: Dict[int, frozenset] = field(default_factory=dict)
    _steppy: Dict[int, bool] = field(default_factory=dict)
    _summary: Dict[int, Tuple[List[cst.Call], bool]] = field(default_factory=dict)
    loop_parent: Dict[int, Optional[cst.CSTNode]] = field(default_factory=dict)  # loop id -> enclosing loop

    def summary(self, body: cst.CSTNode) -> Tuple[List[cst.Call], bool]:
        """(calls in evaluation order, assigns a `.grad`?) of a body, collected once."""
        found = self._summary.get(id(body))
        if found is None:
            found = _walk_calls(body.body if isinstance(body, cst.FunctionDef) else body)
            self._summary[id(body)] = found
        return found

    def kind_of(self, text: str) -> Optional[str]:
        """The kind of the object `text` names: by how it was built, else by its name."""
        kind = self.kinds.get(text)
        if kind is not None:
            return kind
        return name_kind(text)


def module_facts(module: cst.Module, path: str, imports: Optional[ImportMap] = None) -> ModuleFacts:
    facts = ModuleFacts(module=module, path=path, imports=imports or ImportMap.of(module))
    _FactCollector(facts).walk(module.body, None, None, None)
    return facts


def _parameter_sources(call: cst.Call) -> List[str]:
    """`netG` in `Adam(netG.parameters(), ...)`: the modules whose parameters an optimizer holds."""
    found: List[str] = []

    class _V(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            func = node.func
            if isinstance(func, cst.Attribute) and func.attr.value in ("parameters", "named_parameters"):
                text = dotted(func.value)
                if text is not None:
                    found.append(text)

    for arg in call.args:
        arg.value.visit(_V())
    return found


def _target_texts(target: cst.BaseExpression) -> List[Optional[str]]:
    """Texts bound by an assignment target, one per element of a tuple/list target."""
    if isinstance(target, (cst.Tuple, cst.List)):
        return [dotted(el.value) if not isinstance(el, cst.StarredElement) else None for el in target.elements]
    return [dotted(target)]


def _statement_children(stmt: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """The statements directly nested in a compound statement (bodies, else, handlers, finally)."""
    for name in ("body", "orelse", "finalbody"):
        part = getattr(stmt, name, None)
        if part is None:
            continue
        if isinstance(part, cst.If):  # elif
            yield part
            continue
        inner = getattr(part, "body", part)
        if isinstance(inner, (list, tuple)):
            yield from inner
        elif isinstance(inner, cst.BaseSuite):
            yield from _statement_children(inner) if not isinstance(inner, cst.IndentedBlock) else inner.body
    for handler in getattr(stmt, "handlers", ()) or ():
        yield from handler.body.body if isinstance(handler.body, cst.IndentedBlock) else ()
    for case in getattr(stmt, "cases", ()) or ():
        yield from case.body.body if isinstance(case.body, cst.IndentedBlock) else ()


class _FactCollector:
    """Collects definitions, loops, and the kind of every object bound from a recognisable call.

    It walks statements only (never into expressions), which keeps it a small fraction of the
    parse time: LibCST visitors over every expression node cost more than parsing.
    """

    def __init__(self, facts: ModuleFacts) -> None:
        self.facts = facts
        self.loop_stack: List[cst.CSTNode] = []

    def walk(self, stmts, cls: Optional[ClassInfo], cls_name: Optional[str], func: Optional[cst.FunctionDef]) -> None:
        for stmt in stmts:
            self.statement(stmt, cls, cls_name, func)

    def statement(
        self, stmt: cst.CSTNode, cls: Optional[ClassInfo], cls_name: Optional[str], func: Optional[cst.FunctionDef]
    ) -> None:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                self.small(small)
                if cls is not None and _turns_off_automatic_optimization(small, func is None):
                    cls.manual_optimization = True
            return
        if isinstance(stmt, cst.BaseSmallStatement):  # from a one-line suite: `if x: opt = SGD(...)`
            self.small(stmt)
            return
        if isinstance(stmt, cst.ClassDef):
            info = ClassInfo(methods={}, bases=[dotted(b.value) or "" for b in stmt.bases])
            self.facts.classes.setdefault(stmt.name.value, info)
            saved, self.loop_stack = self.loop_stack, []
            self.walk(_statement_children(stmt), info, stmt.name.value, None)
            self.loop_stack = saved
            return
        if isinstance(stmt, cst.FunctionDef):
            name = stmt.name.value
            if cls is not None and func is None:
                cls.methods.setdefault(name, stmt)
            else:
                if func is None:
                    self.facts.functions.setdefault(name, stmt)
                self.facts.defs.setdefault((id(func) if func is not None else None, name), stmt)
            self.facts.parent[id(stmt)] = func
            self._param_kinds(stmt)
            saved, self.loop_stack = self.loop_stack, []  # a def's loops are not its caller's
            self.walk(_statement_children(stmt), cls, cls_name, stmt)
            self.loop_stack = saved
            return
        if isinstance(stmt, (cst.For, cst.While)):
            self.facts.loops.append((stmt, cls_name, func))
            self.facts.loop_parent[id(stmt)] = self.loop_stack[-1] if self.loop_stack else None
            self.loop_stack.append(stmt)
            self.walk(_statement_children(stmt), cls, cls_name, func)
            self.loop_stack.pop()
            return
        elif isinstance(stmt, cst.With):
            for item in stmt.items:
                if item.asname is not None:
                    self._bind(_target_texts(item.asname.name), item.item)
        self.walk(_statement_children(stmt), cls, cls_name, func)

    def small(self, small: cst.BaseSmallStatement) -> None:
        if isinstance(small, cst.Assign):
            for target in small.targets:
                self._bind(_target_texts(target.target), small.value)
        elif isinstance(small, cst.AnnAssign):
            if small.value is not None:
                self._bind(_target_texts(small.target), small.value)
        elif isinstance(small, cst.ImportFrom) and isinstance(small.names, cst.ImportStar):
            self.facts.star_import = True

    def _param_kinds(self, node: cst.FunctionDef) -> None:
        """`optimizer: torch.optim.Optimizer` parameters are optimizers whatever their name."""
        params = node.params
        for param in (*params.posonly_params, *params.params, *params.kwonly_params):
            if param.annotation is None:
                continue
            text = self.facts.imports.resolve(param.annotation.annotation) or ""
            if last_part(text) in ("Optimizer", *KNOWN_OPTIMIZERS):
                self.facts.kinds.setdefault(param.name.value, OPTIMIZER)
            elif "LRScheduler" in text:
                self.facts.kinds.setdefault(param.name.value, SCHEDULER)

    def _bind(self, targets: List[Optional[str]], value: cst.BaseExpression) -> None:
        kinds = self._value_kinds(value, len(targets))
        if len(targets) == 1 and targets[0] is not None and isinstance(value, cst.Call):
            if isinstance(value.func, cst.Name):
                self.facts.instances.setdefault(targets[0], value.func.value)
        if len(targets) == 1 and targets[0] is not None and kinds[0] == OPTIMIZER and isinstance(value, cst.Call):
            for module_text in _parameter_sources(value):
                self.facts.sources.setdefault(module_text, set()).add(targets[0])
        for text, kind in zip(targets, kinds):
            if text is None or kind is None:
                continue
            previous = self.facts.kinds.get(text)
            if previous is not None and previous != kind:
                kind = OTHER  # bound to different things: not identifiable, stay silent
            self.facts.kinds[text] = kind

    def _value_kinds(self, value: cst.BaseExpression, count: int) -> List[Optional[str]]:
        """The kind of each of `count` targets bound from `value`."""
        if isinstance(value, (cst.Tuple, cst.List)) and count > 1 and len(value.elements) == count:
            return [self._single_kind(el.value) for el in value.elements]
        if isinstance(value, cst.Call):
            name = self.facts.imports.resolve(value.func) or ""
            method = last_part(name)
            if name.endswith("deepspeed.initialize"):
                # model_engine, optimizer, loader, scheduler = deepspeed.initialize(...):
                # the engine steps and clears; the rest are driven by it.
                return [ENGINE] + [OTHER] * (count - 1)
            if method == "prepare" and count > 1:
                # accelerator.prepare(model, optimizer, ...) keeps each argument's kind.
                return [self._single_kind(arg.value) for arg in value.args][:count] + [None] * (count - len(value.args))
            if method == "optimizers" and isinstance(value.func, cst.Attribute):
                return [OPTIMIZER] * count  # LightningModule.optimizers()
        return [self._single_kind(value)] * count if count == 1 else [None] * count

    def _single_kind(self, value: cst.BaseExpression) -> Optional[str]:
        if isinstance(value, cst.Call):
            name = self.facts.imports.resolve(value.func) or ""
            method = last_part(name)
            if name.startswith("torch.optim.lr_scheduler") or _SCHEDULER_FACTORIES.search(name):
                return SCHEDULER
            if name.startswith("torch.optim.swa_utils"):
                return OTHER
            if method in KNOWN_OPTIMIZERS or (name.startswith("torch.optim.") and method[:1].isupper()):
                return OPTIMIZER
            if method.endswith("Optimizer") and method[:1].isupper():
                return OPTIMIZER  # hvd.DistributedOptimizer(...), ZeroRedundancyOptimizer(...)
            if _SCALER_FACTORIES.search(name):
                return SCALER
            if _OTHER_FACTORIES.search(name) or name.startswith(("gym.", "gymnasium.")):
                return OTHER
            if method == "optimizers" and isinstance(value.func, cst.Attribute):
                return OPTIMIZER
            if method == "prepare" and len(value.args) == 1:
                return self._single_kind(value.args[0].value)
            if method[:1].isupper() and _from_project(self.facts.imports, value.func):
                # `ScheduledOptim(...)` imported from the project: a wrapper whose step() may clear
                return OTHER
            return None
        text = dotted(value)
        if text is not None:
            return self.facts.kinds.get(text)
        if isinstance(value, cst.Subscript):
            # opts = self.optimizers(); opt_g = opts[0]
            base = dotted(value.value)
            if base is not None and self.facts.kinds.get(base) == OPTIMIZER:
                return OPTIMIZER
        return None


# ---------------------------------------------------------------------------------------------
# Scopes: where a helper's names point
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The module a piece of code lives in, what its parameters are bound to, its class.

    `binding` maps a helper's parameter names to the caller's expression texts, so that a helper
    `def update(opt): opt.step()` called as `update(self.optimizer)` steps `self.optimizer`.
    `root` is the analysed module's facts: bound texts are classified there.
    """

    facts: ModuleFacts
    root: ModuleFacts
    binding: Tuple[Tuple[str, str], ...] = ()
    cls: Optional[str] = None
    chain: Tuple[Tuple[cst.CSTNode, bool], ...] = ()  # call sites that led here
    func: Optional[cst.FunctionDef] = None  # the def this code is in (for nested defs)

    @property
    def local(self) -> bool:
        return self.facts is self.root

    def subst(self, text: str) -> Tuple[str, bool]:
        """`text` in the caller's terms, and whether it was bound (then classify it in root)."""
        head, dot, rest = text.partition(".")
        for name, bound in self.binding:
            if name == head:
                return (bound + dot + rest if dot else bound), True
        return text, False

    def kind_of(self, text: str) -> Tuple[str, Optional[str]]:
        text, bound = self.subst(text)
        facts = self.root if bound or self.local else self.facts
        return text, facts.kind_of(text)

    def event(self, kind: str, target: str, node: cst.CSTNode) -> Event:
        return Event(kind, target, self.chain + ((node, self.local),))


def expr_text(expr: cst.BaseExpression, facts: ModuleFacts) -> str:
    text = dotted(expr)
    if text is not None:
        return text
    return norm(facts.module.code_for_node(expr))


# ---------------------------------------------------------------------------------------------
# What one call does
# ---------------------------------------------------------------------------------------------


class Analyzer:
    """Classifies calls and statements of a module (and of project modules it imports)."""

    def __init__(self, root: ModuleFacts, options, project) -> None:
        self.root = root
        self.options = options
        self.project = project
        self.backward_names = tuple(options.backward_functions)
        self.step_names = tuple(options.step_functions)
        self.clear_names = tuple(options.clear_functions)
        # set when a call could be a helper from another project module; the rule then builds the
        # loop again with `project` set (reading other modules only for loops that need it)
        self.wants_project = False
        self._memo: Dict[int, List[Effect]] = {}  # statement id -> effects, for root-scope code

    # -- configured helper names -------------------------------------------------------------
    @staticmethod
    def _matches(text: Optional[str], names: Sequence[str]) -> bool:
        if not text or not names:
            return False
        return any(text == n or text.endswith("." + n) or n.endswith("." + text) for n in names)

    # -- the main entry ----------------------------------------------------------------------
    def call_effects(self, call: cst.Call, scope: Scope) -> List[Effect]:
        """What `call` does to gradients, in order; [] when nothing we track."""
        facts = scope.facts
        func = call.func
        func_text = dotted(func)
        qual = facts.imports.resolve(func) if func_text else None

        if self._matches(func_text, self.clear_names) or self._matches(qual, self.clear_names):
            return [scope.event(CLEAR, ALL, call)]
        if self._matches(func_text, self.backward_names) or self._matches(qual, self.backward_names):
            return [scope.event(BACKWARD, "", call)]
        if self._matches(func_text, self.step_names) or self._matches(qual, self.step_names):
            return [scope.event(STEP, self._configured_step_target(call, scope), call)]

        if qual is not None and qual.endswith("xla_model.optimizer_step") and call.args:
            # torch_xla: xm.optimizer_step(optimizer) reduces gradients and steps the optimizer
            text = dotted(call.args[0].value)
            if text is not None:
                return [scope.event(STEP, scope.subst(text)[0], call)]

        found = backward_call(call, facts.imports)
        if found is not None:
            return [scope.event(BACKWARD, "", call)] if found.accumulates else []

        if isinstance(func, cst.Attribute):
            effects = self._method_effects(call, func, scope)
            if effects is not None:
                return effects
        return self._helper_effects(call, func_text, qual, scope)

    def _configured_step_target(self, call: cst.Call, scope: Scope) -> str:
        for arg in call.args:
            text = dotted(arg.value)
            if text is not None:
                bound, kind = scope.kind_of(text)
                if kind == OPTIMIZER:
                    return bound
        return ALL  # steps some optimizer we cannot name: any clear clears it

    def _method_effects(self, call: cst.Call, func: cst.Attribute, scope: Scope) -> Optional[List[Effect]]:
        """Effects of `receiver.method(...)` we know, or None to try it as a helper."""
        method = func.attr.value
        receiver = func.value
        facts = scope.facts
        if method in ("step", "zero_grad") and self._wrapper_method(dotted(receiver), method, facts):
            return None  # a wrapper class of this module: follow its method's body instead
        if method == "zero_grad":
            text = dotted(receiver)
            if text is not None:
                bound, kind = scope.kind_of(text)
                if kind == OPTIMIZER:
                    return [scope.event(CLEAR, bound, call)]
                owners = self.root.sources.get(bound) if bound else None
                if owners:
                    # netD.zero_grad() where opt_d = Adam(netD.parameters()): clears opt_d's grads
                    return [scope.event(CLEAR, owner, call) for owner in sorted(owners)]
            # model.zero_grad(), self.zero_grad(), anything else: clears every optimizer it may own
            return [scope.event(CLEAR, ALL, call)]
        if method in _GRAD_WIPES and _is_grad(receiver):
            if method in ("fill_", "mul_") and not _zero_arg(call):
                return []
            return [scope.event(CLEAR, ALL, call)]
        if method == "step":
            text = dotted(receiver)
            if text is None and isinstance(receiver, cst.Subscript):
                text = dotted(receiver.value)
                if text is not None:
                    bound, kind = scope.kind_of(text)
                    if kind == OPTIMIZER:
                        return self._step_with_closure(call, expr_text(receiver, facts), scope)
                return []
            if text is None:
                return []
            bound, kind = scope.kind_of(text)
            if kind == OPTIMIZER:
                if _helper_local(text, scope):
                    return []  # a helper's own optimizer, new at every call: its loop is its own
                return self._step_with_closure(call, bound, scope)
            if kind == SCALER or (kind is None and "scaler" in last_part(text).lower()):
                if call.args and call.args[0].keyword is None:
                    target = call.args[0].value
                    ttext = dotted(target)
                    if ttext is not None:
                        if _helper_local(ttext, scope):
                            return []
                        bound_t, _ = scope.kind_of(ttext)  # GradScaler.step's argument is an optimizer
                        return [scope.event(STEP, bound_t, call)]
                    return [scope.event(STEP, expr_text(target, facts), call)]
                return []
            return []  # schedulers, engines (clear for you), EMA, environments, unknown objects
        if method in ("accumulate",) and call.args:
            # accelerator.accumulate(model): the prepared optimizer's zero_grad/step are gated
            return [scope.event(CLEAR, ALL, call)] if _is_accelerate(receiver, facts) else None
        return None

    def _step_with_closure(self, call: cst.Call, target: str, scope: Scope) -> List[Effect]:
        """`opt.step()` or `opt.step(closure)`: the closure's effects happen inside the step."""
        effects: List[Effect] = []
        closure = None
        for arg in call.args:
            if arg.keyword is None or arg.keyword.value == "closure":
                closure = arg.value
                break
        if closure is not None:
            if isinstance(closure, cst.Lambda):
                effects.extend(self.expr_effects(closure.body, scope))
            else:
                text = dotted(closure)
                resolved = self._resolve_function(text, scope) if text else None
                if resolved is not None:
                    effects.append(resolved(call))
                elif text is not None and "closure" in text.lower():
                    effects.append(scope.event(CLEAR, target, call))  # a closure we cannot see: may clear
                else:
                    # `diffopt.step(loss)` (higher), `opt.step(batch)`: not torch.optim's step(closure)
                    return []
        effects.append(scope.event(STEP, target, call))
        return effects

    # -- helpers -------------------------------------------------------------------------------
    def _helper_effects(
        self, call: cst.Call, func_text: Optional[str], qual: Optional[str], scope: Scope
    ) -> List[Effect]:
        if func_text is not None:
            resolved = self._resolve_function(func_text, scope, call)
            if resolved is not None:
                inline = resolved(call)
                if self.relevant(inline) or self._hands_optimizer(call, scope):
                    return [inline]  # (handed the optimizer: follow it, whatever it does with it)
                return []
            if func_text in _HARMLESS_CALLS:
                return []
        return self._opaque_effects(call, func_text, qual, scope)

    def _opaque_effects(
        self, call: cst.Call, func_text: Optional[str], qual: Optional[str], scope: Scope
    ) -> List[Effect]:
        """A call we cannot see into: it may clear what it is handed (precision first)."""
        facts = scope.facts
        if qual is not None and qual.split(".")[0] == "torch":
            return []
        if isinstance(call.func, cst.Attribute):
            if _GRAD_CLEAR_METHOD.search(call.func.attr.value):
                # trainer.reset_grads(), engine.zero_all_grads(): a method we cannot see, named so
                return [scope.event(CLEAR, ALL, call)]
            if call.func.attr.value in _HARMLESS_METHODS:
                return []
            receiver = dotted(call.func.value)
            if receiver is not None and scope.kind_of(receiver)[1] in (SCALER, SCHEDULER, ENGINE, OTHER):
                return []  # scaler.unscale_(opt), scheduler helpers: they read the optimizer
        library = qual is not None and not qual.startswith(".") and qual.split(".")[0] in KNOWN_LIBRARIES
        if library and not _MIGHT_CLEAR_NAME.search(last_part(qual)):
            return []  # get_scheduler(optimizer=...), wandb.watch(model): they do not clear
        effects: List[Effect] = []
        handed_model = False
        for arg in call.args:
            text = dotted(arg.value)
            if text is None:
                continue
            bound, kind = scope.kind_of(text)
            if kind == OPTIMIZER:
                effects.append(scope.event(CLEAR, bound, call))
            elif text in facts.sources or bound in self.root.sources or _MODEL_NAME.search(last_part(text)):
                handed_model = True
        if func_text is None:
            return effects
        name_says = bool(_MIGHT_CLEAR_NAME.search(last_part(func_text)))
        if self._maybe_project_helper(func_text, qual, scope) and (handed_model or name_says):
            effects.append(scope.event(CLEAR, ALL, call))
        elif "." not in func_text and name_says and func_text not in facts.classes:
            # a callable we cannot see (a parameter, a local `zero_fn = ...`) named like a clear
            effects.append(scope.event(CLEAR, ALL, call))
        return effects

    def _maybe_project_helper(self, func_text: str, qual: Optional[str], scope: Scope) -> bool:
        """Could this unresolved call be one of the project's own helpers?"""
        facts = scope.facts
        head = func_text.split(".")[0]
        if head in ("self", "cls"):
            return True  # a method we could not find (inherited from another module)
        if head in facts.imports.aliases:
            target = facts.imports.aliases[head]
            if target.startswith("."):
                return True
            return target.split(".")[0] not in KNOWN_LIBRARIES
        if "." in func_text:
            return False  # a method of some object: not a helper
        return facts.star_import

    def _resolve_function(self, text: str, scope: Scope, call: Optional[cst.Call] = None):
        """A factory `site -> Inline` for the function `text` names, or None."""
        facts = scope.facts
        parts = text.split(".")
        func: Optional[cst.FunctionDef] = None
        target_facts = facts
        cls: Optional[str] = None
        is_method = False
        if len(parts) == 2 and parts[0] in ("self", "cls") and scope.cls is not None:
            func, cls = self._find_method(facts, scope.cls, parts[1])
            is_method = True
        elif len(parts) >= 2 and facts.instances.get(".".join(parts[:-1])) in facts.classes:
            # trainer = Trainer(...); trainer.train_step(batch): a class of this module
            func, cls = self._find_method(facts, facts.instances[".".join(parts[:-1])], parts[-1])
            is_method = True
        elif len(parts) == 1 and parts[0] not in facts.imports.aliases:
            func = _visible_def(facts, scope.func, parts[0])
        if func is None and parts[0] in facts.imports.aliases:
            qualname = _qualify(facts.imports, text)
            if qualname.startswith(".") or qualname.split(".")[0] not in KNOWN_LIBRARIES:
                self.wants_project = True  # a helper another module of the project may define
                found = self.project.resolve_function(facts, qualname) if self.project is not None else None
                if found is not None:
                    target_facts, func = found
        if func is None:
            return None
        params = _param_names(func, skip_self=is_method)
        key = (id(target_facts), id(func))

        def make(site: cst.Call) -> Inline:
            binding = _bind_args(params, site, scope) if site is not None and isinstance(site, cst.Call) else ()
            if is_method:
                receiver, _ = scope.subst(".".join(parts[:-1]))
                if receiver != "self":
                    binding = binding + (("self", receiver),)  # `self.opt` inside is `trainer.opt`
            inner = Scope(
                facts=target_facts,
                root=scope.root,
                binding=binding,
                cls=cls if is_method else None,
                chain=scope.chain + ((site, scope.local),),
                func=func,
            )
            return Inline(func.body, inner, site, key)

        return make

    def _wrapper_method(self, receiver: Optional[str], method: str, facts: ModuleFacts) -> bool:
        """Is `receiver` an instance of a class of this module that defines `method` and is not
        itself an optimizer (`class Trainer: def step(self): ...` vs `class MySGD(Optimizer)`)?"""
        if receiver is None:
            return False
        cls = facts.instances.get(receiver)
        if cls is None or cls not in facts.classes or _optimizer_class(facts, cls):
            return False
        found, _ = self._find_method(facts, cls, method)
        return found is not None

    @staticmethod
    def _find_method(facts: ModuleFacts, cls: str, name: str, depth: int = 0):
        info = facts.classes.get(cls)
        if info is None or depth > 5:
            return None, None
        if name in info.methods:
            return info.methods[name], cls
        for base in info.bases:
            found, owner = Analyzer._find_method(facts, last_part(base), name, depth + 1)
            if found is not None:
                return found, owner
        return None, None

    def relevant(self, inline: Inline, _seen: Optional[set] = None) -> bool:
        """Does the helper (transitively) do anything to gradients? Memoised per function."""
        facts = inline.scope.facts
        cache = facts._relevant
        key = id(inline.body)
        if key in cache:
            return cache[key]
        seen = _seen if _seen is not None else set()
        if key in seen:
            return False
        seen.add(key)
        inline_func = inline.scope.func
        params = set(_param_names(inline_func, skip_self=False)) if inline_func is not None else set()
        result = False
        calls, grad_assign = facts.summary(inline.body)
        for call in calls:
            func = call.func
            if isinstance(func, cst.Attribute) and func.attr.value in (
                "step",
                "zero_grad",
                "backward",
                "manual_backward",
                *_GRAD_WIPES,
                "accumulate",
            ):
                result = True
            elif backward_call(call, facts.imports) is not None:
                result = True
            elif any(
                dotted(a.value) in params and name_kind(dotted(a.value)) == OPTIMIZER
                for a in call.args
                if dotted(a.value)
            ):
                result = True  # hands its optimizer parameter on (to something that may clear it)
            else:
                text = dotted(func)
                if text and (self._matches(text, self.clear_names + self.step_names + self.backward_names)):
                    result = True
                elif text:
                    resolved = self._resolve_function(text, inline.scope)
                    if resolved is not None and self.relevant(resolved(call), seen):
                        result = True
            if result:
                break
        if not result:
            result = grad_assign
        cache[key] = result
        return result

    def may_step_or_backward(self, loop: cst.CSTNode, scope: Scope) -> bool:
        """A cheap syntactic gate before building a loop's graph: could anything in the loop step
        an optimizer or run a backward (directly, through a helper of this module, or through a
        project helper whose name or arguments suggest training)?"""
        return self._steppy(scope.facts.summary(loop)[0], scope, set())

    def _steppy(self, calls: List[cst.Call], scope: Scope, seen: set) -> bool:
        facts = scope.facts
        for call in calls:
            func = call.func
            if isinstance(func, cst.Attribute) and func.attr.value in _STEPPY_METHODS:
                return True
            if backward_call(call, facts.imports) is not None:
                return True
            text = dotted(func)
            if not text:
                continue
            if self._matches(text, self.step_names + self.backward_names):
                return True
            if text.split(".")[0] in facts.imports.aliases:
                qualname = _qualify(facts.imports, text)
                if qualname.startswith(".") or qualname.split(".")[0] not in KNOWN_LIBRARIES:
                    if _STEPPY_NAME.search(last_part(text)) or self._hands_optimizer(call, scope):
                        return True  # maybe a project helper that trains: decided on the graph
                continue
            saved = self.wants_project
            resolved = self._resolve_function(text, scope)
            self.wants_project = saved
            if resolved is None:
                continue
            inline = resolved(call)
            key = id(inline.body)
            cached = facts._steppy.get(key)
            if cached is None:
                if key in seen:
                    continue
                seen.add(key)
                cached = self._steppy(inline.scope.facts.summary(inline.body)[0], inline.scope, seen)
                facts._steppy[key] = cached
            if cached:
                return True
        return False

    def _hands_optimizer(self, call: cst.Call, scope: Scope) -> bool:
        for arg in call.args:
            text = dotted(arg.value)
            if text is not None and scope.kind_of(text)[1] == OPTIMIZER:
                return True
        return False

    # -- statements ------------------------------------------------------------------------------
    def expr_effects(self, expr: cst.CSTNode, scope: Scope) -> List[Effect]:
        """Effects of every call in `expr`, in evaluation order (arguments before the call)."""
        effects: List[Effect] = []
        for call in calls_in(expr):
            effects.extend(self.call_effects(call, scope))
        return effects

    def statement_effects(self, stmt: cst.BaseSmallStatement, scope: Scope) -> List[Effect]:
        """Effects of one small statement; memoised for the analysed file's own code (outer and
        inner loops see the same statements)."""
        memo = not scope.chain and not scope.binding
        if memo and id(stmt) in self._memo:
            return list(self._memo[id(stmt)])
        effects = self.expr_effects(stmt, scope)
        if _clears_grad_by_assignment(stmt):
            effects.append(scope.event(CLEAR, ALL, stmt))
        if memo:
            self._memo[id(stmt)] = list(effects)
        return effects


def _helper_local(text: str, scope: Scope) -> bool:
    """Is `text` (as written in a followed helper) rooted in a name bound inside that helper and
    not passed in by the caller? Such an object is the helper's own, made afresh at every call."""
    if not scope.chain or scope.func is None:
        return False
    head = text.split(".")[0]
    if head in ("self", "cls") or any(name == head for name, _ in scope.binding):
        return False
    return head in _locals_of(scope.facts, scope.func)


def _locals_of(facts: ModuleFacts, func: cst.FunctionDef) -> frozenset:
    """Names a def binds itself: parameters, assignment/loop/with/import targets, nested defs
    (minus `global`/`nonlocal` ones). Memoised per def."""
    cached = facts._locals.get(id(func))
    if cached is not None:
        return cached
    names = set(p.name.value for p in (*func.params.posonly_params, *func.params.params, *func.params.kwonly_params))
    for star in (func.params.star_arg, func.params.star_kwarg):
        if isinstance(star, cst.Param):
            names.add(star.name.value)
    shared: set = set()

    def heads(target: cst.CSTNode) -> None:
        for text in assigned_texts(target):
            if "." not in text:
                names.add(text)

    def walk(stmts) -> None:
        for stmt in stmts:
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, cst.Assign):
                        for target in small.targets:
                            heads(target.target)
                    elif isinstance(small, (cst.AugAssign, cst.AnnAssign)):
                        heads(small.target)
                    elif isinstance(small, (cst.Global, cst.Nonlocal)):
                        shared.update(n.name.value for n in small.names)
                    elif isinstance(small, (cst.Import, cst.ImportFrom)) and not isinstance(
                        small.names, cst.ImportStar
                    ):
                        for alias in small.names:
                            bound = alias.asname.name if alias.asname is not None else alias.name
                            text = dotted(bound) if isinstance(bound, cst.BaseExpression) else None
                            if text:
                                names.add(text.split(".")[0])
                continue
            if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
                names.add(stmt.name.value)
                continue
            if isinstance(stmt, cst.For):
                heads(stmt.target)
            elif isinstance(stmt, cst.With):
                for item in stmt.items:
                    if item.asname is not None:
                        heads(item.asname.name)
            walk(_statement_children(stmt))

    walk(func.body.body if isinstance(func.body, cst.IndentedBlock) else ())
    result = frozenset(names - shared)
    facts._locals[id(func)] = result
    return result


def assigned_texts(target: cst.CSTNode) -> List[str]:
    """Dotted texts an assignment target binds (`a`, `self.b`, both of `a, (b, *c)`)."""
    if isinstance(target, (cst.Tuple, cst.List)):
        out: List[str] = []
        for element in target.elements:
            out.extend(assigned_texts(element.value))
        return out
    if isinstance(target, cst.StarredElement):
        return assigned_texts(target.value)
    text = dotted(target) if isinstance(target, cst.BaseExpression) else None
    return [text] if text else []


def _turns_off_automatic_optimization(small: cst.BaseSmallStatement, class_level: bool) -> bool:
    """`self.automatic_optimization = False` in a method, or `automatic_optimization = False` in the
    class body: Lightning then calls `training_step` once per batch and the code steps itself."""
    if isinstance(small, cst.Assign):
        targets = [t.target for t in small.targets]
        value = small.value
    elif isinstance(small, cst.AnnAssign) and small.value is not None:
        targets, value = [small.target], small.value
    else:
        return False
    if not (isinstance(value, cst.Name) and value.value == "False"):
        return False
    wanted = "automatic_optimization" if class_level else "self.automatic_optimization"
    return any(dotted(t) == wanted for t in targets)


def implicit_loops(facts: ModuleFacts) -> Iterator[Tuple[cst.FunctionDef, str]]:
    """Lightning `training_step` methods of classes with manual optimization: the framework calls
    them once per batch, so their body is a loop body (the loop is Lightning's)."""
    for name, info in facts.classes.items():
        step = info.methods.get("training_step")
        if step is not None and info.manual_optimization:
            yield step, name


def _from_project(imports: ImportMap, func: cst.BaseExpression) -> bool:
    """Is `func` imported from a module that is not a known library (the project's own)?"""
    text = dotted(func)
    if text is None or text.split(".")[0] not in imports.aliases:
        return False
    qualname = _qualify(imports, text)
    return qualname.startswith(".") or qualname.split(".")[0] not in KNOWN_LIBRARIES


def _optimizer_class(facts: ModuleFacts, cls: str, depth: int = 0) -> bool:
    """Does the class (of this module) derive from an optimizer (`torch.optim.Optimizer`, Adam...)?"""
    info = facts.classes.get(cls)
    if info is None or depth > 5:
        return False
    for base in info.bases:
        name = last_part(base)
        if name.endswith("Optimizer") or name in KNOWN_OPTIMIZERS or _optimizer_class(facts, name, depth + 1):
            return True
    return False


def _visible_def(facts: ModuleFacts, where: Optional[cst.FunctionDef], name: str) -> Optional[cst.FunctionDef]:
    """The def `name` means inside `where`: its own nested defs, then enclosing ones, then module."""
    current = where
    for _ in range(50):
        found = facts.defs.get((id(current) if current is not None else None, name))
        if found is not None or current is None:
            return found
        current = facts.parent.get(id(current))
    return None


def _qualify(imports: ImportMap, text: str) -> str:
    head, dot, rest = text.partition(".")
    target = imports.aliases.get(head, head)
    return target + dot + rest if dot else target


def _param_names(func: cst.FunctionDef, skip_self: bool) -> List[str]:
    params = [p.name.value for p in (*func.params.posonly_params, *func.params.params)]
    if skip_self and params:
        params = params[1:]
    return params


def _bind_args(params: List[str], call: cst.Call, scope: Scope) -> Tuple[Tuple[str, str], ...]:
    """Parameter name -> caller's text (in root terms), for arguments that are plain names."""
    binding: List[Tuple[str, str]] = []
    index = 0
    for arg in call.args:
        if arg.star:
            break
        text = dotted(arg.value)
        if arg.keyword is not None:
            name = arg.keyword.value
        elif index < len(params):
            name = params[index]
            index += 1
        else:
            continue
        if text is not None:
            bound, _ = scope.subst(text)
            binding.append((name, bound))
    return tuple(binding)


def _is_grad(expr: cst.BaseExpression) -> bool:
    """`p.grad` or `p.grad.data`."""
    if isinstance(expr, cst.Attribute) and expr.attr.value == "data":
        expr = expr.value
    return isinstance(expr, cst.Attribute) and expr.attr.value == "grad"


def _zero_arg(call: cst.Call) -> bool:
    """Is the first argument the literal 0 (`fill_(0)`, `mul_(0.0)`, `fill_(0x0)`)?"""
    if not call.args or not isinstance(call.args[0].value, (cst.Integer, cst.Float)):
        return False
    literal = call.args[0].value.value.replace("_", "")
    try:
        return float(literal) == 0.0
    except ValueError:
        try:
            return int(literal, 0) == 0
        except ValueError:
            return False


def _is_accelerate(receiver: cst.BaseExpression, facts: ModuleFacts) -> bool:
    text = dotted(receiver) or ""
    return "accelerator" in last_part(text).lower() or "accelerate" in (facts.imports.resolve(receiver) or "")


def _clears_grad_by_assignment(stmt: cst.CSTNode) -> bool:
    """`p.grad = None`, `p.grad = torch.zeros_like(p)`, `del p.grad`."""
    if isinstance(stmt, cst.Assign):
        return any(_is_grad(t.target) for t in stmt.targets)
    if isinstance(stmt, cst.AnnAssign):
        return _is_grad(stmt.target)
    if isinstance(stmt, cst.Del):
        return _is_grad(stmt.target)
    return False


# Fields of LibCST nodes that hold only punctuation, whitespace or flags: never a call.
_SKIPPED_FIELDS = frozenset(
    """lpar rpar comma semicolon leading_lines lines_after_decorators header footer newline indent
    colon equal dot star lbracket rbracket lbrace rbrace operator first_line last_line empty_lines
    trailing_whitespace asynchronous default_indent default_newline encoding has_trailing_newline""".split()
)
_NODE_FIELDS: Dict[type, Tuple[str, ...]] = {}
_NOT_HERE = (cst.Lambda, cst.FunctionDef, cst.ClassDef)  # bodies that do not run where written


def _fields_of(cls: type) -> Tuple[str, ...]:
    names = _NODE_FIELDS.get(cls)
    if names is None:
        names = tuple(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in _SKIPPED_FIELDS and not f.name.startswith("whitespace")
        )
        _NODE_FIELDS[cls] = names
    return names


def _walk_calls(root: cst.CSTNode) -> Tuple[List[cst.Call], bool]:
    """(calls in evaluation order -- a call after its function and arguments --, does it assign or
    delete a `.grad`?) of `root`, not entering lambdas, defs or classes nested in it.

    A plain stack walk over the nodes' fields: about ten times faster than a CSTVisitor, which
    matters because every loop and every followed helper is walked.
    """
    calls: List[cst.Call] = []
    grad_assign = False
    stack: List[Tuple[cst.CSTNode, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            calls.append(node)  # type: ignore[arg-type]
            continue
        if node is not root and isinstance(node, _NOT_HERE):
            continue
        if isinstance(node, cst.Call):
            stack.append((node, True))
        elif isinstance(node, (cst.Assign, cst.AnnAssign, cst.Del)) and not grad_assign:
            grad_assign = _clears_grad_by_assignment(node)
        children: List[cst.CSTNode] = []
        for name in _fields_of(type(node)):
            value = getattr(node, name)
            if isinstance(value, cst.CSTNode):
                children.append(value)
            elif isinstance(value, (tuple, list)):
                children.extend(child for child in value if isinstance(child, cst.CSTNode))
        stack.extend((child, False) for child in reversed(children))
    return calls, grad_assign


def assigns_grad(body: cst.CSTNode) -> bool:
    """Does `body` assign or delete a `.grad` (`p.grad = None`, `del p.grad`)?"""
    return _walk_calls(body)[1]


def calls_in(node: cst.CSTNode) -> List[cst.Call]:
    """Calls in `node` (a def: its body) in evaluation order."""
    return _walk_calls(node.body if isinstance(node, cst.FunctionDef) else node)[0]


def iter_loops(facts: ModuleFacts) -> Iterator[Tuple[cst.CSTNode, Optional[str], Optional[cst.FunctionDef]]]:
    """Every for/while loop of the module, outer before inner, with its class's name and its def."""
    return iter(facts.loops)

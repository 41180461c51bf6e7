"""Which method of the linted module a call `obj.method(...)` runs, when `obj` is not `self`.

`agent.learn(states, actions, rewards)` called from a loader loop fills the parameters of the
agent's `learn` with batches, just as `learn(states, ...)` does for a plain function; the call-site
pass of `analysis.scalars` binds them when every call in the file agrees. The method is known when
the receiver is an instance of a class of the module (`agent = DQNAgent(...)`, or a parameter every
caller fills with one), or, when nothing is known of the receiver, when exactly one class of the
module defines a method of that name. A receiver known to be something else (a tensor, a batch, a
criterion, a library module, an imported module such as `torch`) runs no method of the module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Tuple

import libcst as cst

from gradlint.analysis.call_sites import IMPLICIT_METHODS
from gradlint.analysis.evaluate import Evaluator
from gradlint.analysis.projectmodules import ModuleInfo
from gradlint.analysis.reads import param_names
from gradlint.analysis.shapes import UNKNOWN, Instance

if TYPE_CHECKING:
    from gradlint.analysis.summaries import ClassRef, Summaries

# Names of methods of builtin containers and of every torch module: a call of one on an unknown
# receiver is as likely `stats.update(...)` or `net.train()` as the module's own method.
_COMMON = frozenset(
    "update append extend add get pop copy items keys values clear insert remove setdefault to cuda cpu "
    "train eval apply parameters state_dict load_state_dict register_buffer half float double".split()
)


def called_method(
    func: cst.Attribute, env, evaluator: Evaluator, info: ModuleInfo, summaries: "Summaries"
) -> Optional[Tuple["ClassRef", cst.FunctionDef]]:
    """(class, def) of the module's method that `func(...)` calls; None when not known."""
    name = func.attr.value
    if name in IMPLICIT_METHODS or name.startswith("__"):  # torch or a framework calls these too
        return None
    if evaluator._names_module(func.value):
        return None  # `torch.save(...)`, `np.mean(...)`
    receiver = evaluator.value(func.value, env)
    if isinstance(receiver, Instance):
        if receiver.gathered or receiver.cls is None:
            return None
        ref = summaries.class_ref(receiver.cls)
        if ref is None or ref[0] is not info:
            return None
        found = summaries.method(ref, name)
        if found is None or found[0] is not info:
            return None
        method = found[1]
    elif receiver == UNKNOWN and name not in _COMMON:
        owners = [
            (cls, method)
            for cls_name, cls in info.classes.items()
            if info.counts.get(cls_name) == 1
            for method in info.methods(cls)
            if method.name.value == name
        ]
        if len(owners) != 1:
            return None
        ref, method = (info, owners[0][0]), owners[0][1]
    else:
        return None
    if param_names(method)[:1] != ["self"] or method.decorators:
        return None
    return ref, method

"""What library "preparer" objects do to the module handed to them, for GL003's gather analysis.

Some training libraries wrap the model for you: `accel.prepare_model(model)`. Whether that wrap
gathers (`nn.DataParallel`: the replicas' 0-dim losses come back as one loss per GPU) or not
(`DistributedDataParallel`, FSDP, nothing: results pass through) decides whether backpropagating
what the model returns fails on several GPUs. The facts are kept in the one table `PREPARERS`,
each with where it comes from; nothing else in the analysis knows a library's method by name.

A receiver is known to be such an object when the analysed code constructs it
(`accel = ml.Accelerator()`) or annotates a parameter with its class (`accel: ml.Accelerator`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import libcst as cst

from gradlint.analysis.names import ImportMap
from gradlint.analysis.shapes import UNKNOWN, Instance, Value


@dataclass(frozen=True)
class Preparer:
    """`<package>...<cls>` objects' `method(module, ...)` returns the module wrapped; `gathers`:
    in `nn.DataParallel` (on a machine with several GPUs), else passed through unchanged in what
    it returns (one argument: that object; several: a tuple of them in order)."""

    package: str  # top-level package the class is imported from
    cls: str  # class name, whatever submodule it is imported through
    method: str
    gathers: bool
    source: str  # where the fact was read


PREPARERS: Tuple[Preparer, ...] = (
    Preparer(
        "audiotools", "Accelerator", "prepare_model", True,
        "descriptinc/audiotools, audiotools/ml/accelerator.py: `use_dp = world_size > 1 and LOCAL_RANK unset`"
        " (launched without torchrun); prepare_model then returns `DataParallel(model)`, with torchrun"
        " `DistributedDataParallel`, on one GPU the model itself",
    ),
    Preparer(
        "accelerate", "Accelerator", "prepare_model", False,
        "huggingface/accelerate, src/accelerate/accelerator.py: prepare_model wraps in"
        " DistributedDataParallel/FSDP/DeepSpeed engines by distributed type, never in DataParallel",
    ),
    Preparer(
        "accelerate", "Accelerator", "prepare", False,
        "huggingface/accelerate, src/accelerate/accelerator.py: prepare(*args) prepares each object"
        " (models through prepare_model) and returns them in order, one object alone",
    ),
)


def library_class(qualified: Optional[str]) -> Optional[str]:
    """"package.Class" when `qualified` (an import-resolved name such as
    `audiotools.ml.accelerator.Accelerator`) is a class of the table, else None."""
    if not qualified or "." not in qualified:
        return None
    package, last = qualified.split(".", 1)[0], qualified.rsplit(".", 1)[-1]
    for fact in PREPARERS:
        if fact.package == package and fact.cls == last:
            return f"{package}.{last}"
    return None


def preparer(library: str, method: str) -> Optional[Preparer]:
    """The fact for `method` of an object of the table class `library` ("package.Class")."""
    for fact in PREPARERS:
        if f"{fact.package}.{fact.cls}" == library and fact.method == method:
            return fact
    return None


def add_annotated(env: Dict[str, Value], fn: cst.FunctionDef, imports: ImportMap) -> None:
    """Give the parameters of `fn` annotated with a table class (`accel: ml.Accelerator`) an
    object of that class in `env`, unless a call already bound something known to them."""
    params = fn.params
    for param in list(params.posonly_params) + list(params.params) + list(params.kwonly_params):
        if param.annotation is None:
            continue
        found = library_class(imports.resolve(param.annotation.annotation))
        if found is not None and env.get(param.name.value, UNKNOWN) == UNKNOWN:
            env[param.name.value] = Instance(None, False, found)

"""Where batches come from: the values that iterating yields a batch of samples.

A loop over a batch source binds its target to a batch (`analysis.shapes.DATA`); anything else is
not known to hold samples, and GL003 stays silent on it. A source is what the code shows:

- a value built by a `DataLoader(...)` call (`Shape("loader")`), wherever it is bound: a local or
  module name, `self.loader = DataLoader(...)` in `__init__`, or returned by a project function or
  method (`get_loader(ds)`, `self.train_dataloader()`, `make_batches(cfg)` imported from another
  module of the project), and passed through `accelerator.prepare`;
- a name spelt like a loader when nothing else is known of it: `*loader*` (`train_loader`,
  `self.dataloader`), `dl`, `*_dl` (`train_dl`), or the call of a function so named
  (`build_loader(cfg)`, `self.get_train_dataloader()`);
- `iter(source)`, whose `next(...)` is a batch.

Other names (`pairs`, `dataset`, `batches`, a list) are not sources unless bound to one of these:
a dataset yields single samples, and a list holds whatever was put in it.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Protocol

import libcst as cst

from gradlint.analysis.names import dotted
from gradlint.analysis.shapes import DATA, UNKNOWN, Seq, Shape, Value

Env = Dict[str, Value]


class Evaluator(Protocol):
    """What is asked of the expression evaluator (`analysis.evaluate`, which imports this module)."""

    def value(self, expr: cst.BaseExpression, env: Env) -> Value: ...

LOADER = Shape("loader")
# What a DataLoader yields one sample at a time: `batch_size=None` (automatic batching off) or
# batches of one (`batch_size=1`, the default). Its values are never larger batches, so it is no
# batch source, whatever its name says.
SAMPLES = Shape("samples")


def loader_of(args) -> Shape:
    """`DataLoader(dataset, batch_size, ...)` (`args`: the call's `CallArgs`): a batch source
    unless the call shows samples come one at a time. A `batch_sampler` batches whatever
    `batch_size` says; a `batch_size` that is not a literal (`cfg.batch_size`) is taken as a batch."""
    if args.starred or "batch_sampler" in args.keywords:
        return LOADER
    given = args.keywords.get("batch_size", args.positional[1] if len(args.positional) > 1 else None)
    if given is None:
        return SAMPLES  # the default batch_size=1
    if isinstance(given, cst.Name) and given.value == "None":
        return SAMPLES
    if isinstance(given, cst.Integer) and given.evaluated_value == 1:
        return SAMPLES
    return LOADER
# Methods of an object whose first name says it is an accelerator, which hand their arguments back
# prepared, in order (`accelerator.prepare(model, optimizer, train_dl)`).
_PREPARE = frozenset({"prepare", "prepare_data_loader"})


def loader_name(text: Optional[str]) -> bool:
    """Is the last part of a (dotted) name spelt like a data loader's?"""
    if not text:
        return False
    last = text.rsplit(".", 1)[-1].lower()
    return "loader" in last or last == "dl" or last.endswith("_dl")


def _named(expr: cst.BaseExpression) -> Optional[str]:
    """The name of `expr`, or of the function it calls (`build_loader(cfg)`)."""
    if isinstance(expr, cst.Call):
        return dotted(expr.func)
    return dotted(expr)


def is_loader(expr: cst.BaseExpression, env: Env, evaluator: Evaluator) -> bool:
    """Does iterating `expr` yield batches?"""
    value = evaluator.value(expr, env)
    if isinstance(value, Shape) and value.kind == "loader":
        return True
    if value == SAMPLES:
        return False
    if value == UNKNOWN and isinstance(expr, cst.Call):
        iterated = getattr(evaluator, "iterated", None)  # an imported project function's return
        returned = iterated(expr, env) if iterated is not None else None
        if isinstance(returned, Shape) and returned.kind == "loader":
            return True
    text = _named(expr)
    if text is not None and "loader" in text.rsplit(".", 1)[-1].lower() and not isinstance(expr, cst.Call):
        return True  # `train_loader`, `self.dataloader`: named so, whatever it was built from
    # Other spellings (`dl`, `train_dl`, `build_loader(cfg)`) only while nothing else is known.
    return value == UNKNOWN and loader_name(text)


def builtin_batch(call: cst.Call, env: Env, evaluator: Evaluator) -> Optional[Value]:
    """`iter(source)` is a source; `next(source)` (also `next(it, None)`) is a batch. None: not
    such a call."""
    func = call.func
    if not isinstance(func, cst.Name) or func.value not in ("iter", "next") or func.value in env:
        return None
    if not call.args or call.args[0].star or call.args[0].keyword is not None or len(call.args) > 2:
        return None
    if not is_loader(call.args[0].value, env, evaluator):
        return None
    return LOADER if func.value == "iter" else DATA


def prepared(call: cst.Call, env: Env, evaluator: Evaluator) -> Optional[Value]:
    """`accelerator.prepare(model, opt, train_dl)` on an accelerator not otherwise known: the
    loaders come back in their places (the other objects are not followed). None: not such a call."""
    func = call.func
    if not isinstance(func, cst.Attribute) or func.attr.value not in _PREPARE:
        return None
    receiver = dotted(func.value)
    if receiver is None or "accelerator" not in receiver.rsplit(".", 1)[-1].lower():
        return None
    if any(arg.star or arg.keyword is not None for arg in call.args) or not call.args:
        return None
    if evaluator.value(func.value, env) != UNKNOWN:
        return None  # a known accelerator (`analysis.libraries`) or something else
    items = prepared_items([arg.value for arg in call.args], None, env, evaluator)
    return items[0] if len(items) == 1 else Seq(tuple(items))


def prepared_items(
    exprs: List[cst.BaseExpression], values: Optional[List[Value]], env: Env, evaluator: Evaluator
) -> List[Value]:
    """What a preparer hands back for each argument: a loader for a loader, else the argument's
    value (`values`, when known) or unknown."""
    out: List[Value] = []
    for index, expr in enumerate(exprs):
        if is_loader(expr, env, evaluator):
            out.append(LOADER)
        else:
            out.append(values[index] if values is not None else UNKNOWN)
    return out

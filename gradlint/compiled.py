"""Stage two of the prefilter (gradlint/prefilter.py): the names CPython's compiled code of a
module really reads (not merely binds, not in docstrings or comments), and what of that is kept
of each module the imported-helper search compiled, so that stage two of that module, when it
is linted too, needs no compile of its own.

`wanted` arguments are prefilter.Wanted (names, autograd_names, helpers, defines). Imports no
LibCST.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

Wanted = Any  # gradlint.prefilter.Wanted (not imported: the prefilter imports this module)


def _code_objects(code) -> List:
    """A code object and every code object nested in it (functions, classes, lambdas, ...)."""
    out = []
    todo = [code]
    while todo:
        code = todo.pop()
        out.append(code)
        todo.extend(c for c in code.co_consts if hasattr(c, "co_names"))
    return out


def _reads_name(code, name: str) -> bool:
    """Does `code` (not the code nested in it) do more with global/attribute/imported `name`
    than bind it? `def backward(ctx, grad)` in an autograd Function's class body only stores
    the name. When some name of `co_names` is used by no instruction, the compiler dropped
    code that used it (`if False:`), whose reads are unknown: then True."""
    import dis

    seen = set()
    for instruction in dis.get_instructions(code):
        value = instruction.argval
        if isinstance(value, str):
            if value == name and not instruction.opname.startswith(("STORE_", "DELETE_")):
                return True
            seen.add(value)
    return not set(code.co_names) <= seen


def _used_names(codes: List, candidates: Iterable[str]) -> set:
    """Those of `candidates` that some code object reads (see `_reads_name`)."""
    used = set()
    for name in candidates:
        if any(name in code.co_names and _reads_name(code, name) for code in codes):
            used.add(name)
    return used


def _all_names(codes: List) -> set:
    """Every name of the code objects: globals, attributes, imports, locals, cells, free."""
    names: set = set()
    for code in codes:
        names.update(code.co_names, code.co_varnames, code.co_cellvars, code.co_freevars)
    return names


def compile_codes(text: str, path: str) -> Optional[List]:
    """The module's code objects as CPython compiles it; None when it does not compile."""
    import warnings

    try:
        with warnings.catch_warnings():  # invalid escapes etc. are the user's business, not ours
            warnings.simplefilter("ignore")
            code = compile(text, path, "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError):
        return None
    return _code_objects(code)


@functools.lru_cache(maxsize=1)
def compiler_keeps_dead_names() -> bool:
    """Does this CPython record the names of code it never runs (`if False:`, `while 0:`)?
    3.10+ do; 3.9 drops them, so there a name missing from the code proves nothing (LibCST
    still sees such calls) and stage two stays off."""
    probe = ("if False:\n    a.n1()\nif 0:\n    a.n2()\nwhile False:\n    a.n3()\n"
             "if not __debug__:\n    a.n4()\nif True:\n    pass\nelse:\n    a.n5()\n")
    wanted = {"n1", "n2", "n3", "n4", "n5"}
    return _used_names(compile_codes(probe, "<probe>") or [], wanted) == wanted


def names_autograd(codes: List) -> bool:
    """Does the code name torch.autograd at all (`torch.autograd.grad`, `from torch import
    autograd`, `from torch.autograd import grad`: an attribute, an imported name or a dotted
    module of an import)? Without it no call resolves to `torch.autograd.grad`."""
    return any(name == "autograd" or "autograd" in name.split(".")
               for code in codes for name in code.co_names)


def may_run_backward(codes: List, wanted: Wanted, autograd: bool) -> bool:
    """Do these code objects read a wanted name, a configured helper (any name), or an
    autograd name (when the module names torch.autograd: `autograd`)?"""
    if (wanted.helpers | wanted.defines) & _all_names(codes):
        return True
    names = wanted.names | (wanted.autograd_names if autograd else frozenset())
    return bool(_used_names(codes, sorted(names)))


# What stage two needs of each module the helper search compiled, by (absolute path, sha256 of
# its bytes, configured helpers): most of those are linted too (a test suite's common_utils.py),
# and stage two then need not compile them again. Not the code objects (about 55 bytes per byte
# of source): whether the module names torch.autograd, which of every rule's names it reads and
# which of the names that admit by being bound (defines, configured helpers) it binds.
_SUMMARIES: Dict[Tuple[str, str, frozenset], Tuple[bool, frozenset, frozenset]] = {}
MAX_SUMMARIES = 4096


def forget_summaries() -> None:
    """Forget every kept summary (tests that rewrite files in place)."""
    _SUMMARIES.clear()


def remember_summary(data: bytes, path: str, universe, codes: List, autograd: bool) -> None:
    """Keep what stage two needs of the module compiled from `data` into `codes` (the module's
    code first). `universe`: every staged rule's needs, with the configured helpers (stage
    two's `wanted` for any selection is within it)."""
    configured = universe.helpers
    used = frozenset(_used_names(codes, sorted(universe.names | universe.autograd_names)))
    bound = frozenset((universe.helpers | universe.defines) & _all_names(codes))
    if len(_SUMMARIES) >= MAX_SUMMARIES:
        _SUMMARIES.clear()
    _SUMMARIES[(os.path.abspath(path), hashlib.sha256(data).hexdigest(), configured)] = (autograd, used, bound)


def summarised(text: str, data: Optional[bytes], path: str, wanted: Wanted, configured: frozenset) -> Optional[bool]:
    """Stage two's answer for `text` from the summary of the helper search's compile of the same
    bytes (None: none, or `text` is not exactly those bytes decoded as UTF-8)."""
    if not _SUMMARIES or data is None or not compiler_keeps_dead_names():
        return None
    known = _SUMMARIES.get((os.path.abspath(path), hashlib.sha256(data).hexdigest(), configured))
    if known is None or text.encode("utf-8", "surrogatepass") != data:
        return None
    autograd, used, bound = known
    if (wanted.helpers | wanted.defines) & bound:
        return True
    return bool((wanted.names | (wanted.autograd_names if autograd else frozenset())) & used)


def functions_running_backward(data: bytes, path: str, names: set, wanted, universe=None) -> Optional[set]:
    """Those of the function `names` whose compiled code (any definition of that name, with
    the code nested in it) may run a backward (`may_run_backward`); None when the module
    does not compile or this CPython drops dead code's names."""
    import warnings

    if not names or wanted is None or not compiler_keeps_dead_names():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = compile(data, path, "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError):
        return None
    codes = _code_objects(module)
    autograd = names_autograd(codes)
    if universe is not None:
        remember_summary(data, path, universe, codes, autograd)
    out = set()
    for code in _code_objects(module):
        if code.co_name in names and code.co_name not in out:
            if may_run_backward(_code_objects(code), wanted, autograd):
                out.add(code.co_name)
    return out

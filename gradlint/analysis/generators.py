"""Generator functions seen from their call sites.

Calling a generator function runs none of its body: the part before its `yield` runs when the
generator is first advanced, the rest when it is advanced again. So a helper such as

    @contextlib.contextmanager
    def optimizer_step(optimizer):
        optimizer.zero_grad()
        yield
        optimizer.step()

used as `with optimizer_step(opt): loss.backward()` clears on entering the `with` block and steps
on leaving it: the backward runs between the two. `context_parts` gives those two parts for a
`@contextmanager` generator simple enough to split (one `yield`, a statement of its body or of the
body of a `try` there); the control-flow layer places them around the `with` body. Any other use of
a generator (`gen = helper(opt); next(gen)`, iterating it) runs its body at times the analysis
does not follow: such a call is a call we cannot see into.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst

from gradlint.analysis.defuse import yields_in
from gradlint.analysis.events import Inline
from gradlint.analysis.names import ImportMap, dotted
from gradlint.analysis.tree import walk

@dataclass
class Part:
    """Some statements of a helper followed at a call: the part of a `@contextmanager` generator
    before its `yield` (run on entering a `with` block) or after it (run on leaving)."""

    inline: Inline
    statements: Sequence[cst.CSTNode]


# (statements run on entering the `with` block, statements run on leaving it)
Parts = Tuple[List[cst.BaseStatement], List[cst.BaseStatement]]

_PARTS: Dict[int, Tuple[cst.FunctionDef, Optional[Parts]]] = {}


def is_generator(func: cst.FunctionDef) -> bool:
    """Does the def's own body (not a def, lambda or class nested in it) hold a `yield`?"""
    return bool(yields_in(func.body))


def is_context_manager(func: cst.FunctionDef, imports: ImportMap) -> bool:
    """Is the def decorated with `contextlib.contextmanager` (not the async one)?"""
    if func.asynchronous is not None:
        return False
    for decorator in func.decorators:
        qual = imports.resolve(decorator.decorator) or ""
        if qual == "contextlib.contextmanager" or dotted(decorator.decorator) == "contextmanager":
            return True
    return False


def context_parts(func: cst.FunctionDef) -> Optional[Parts]:
    """(before, after) the only `yield` of a generator: the statements run on entering a `with`
    block and on leaving it normally. The `yield` is a statement of the body (`yield`, `yield x`,
    `x = yield`) or of the body of a `try:` there (then `else:` and `finally:` run after it);
    None when the generator has another shape, or its `yield` computes anything."""
    known = _PARTS.get(id(func))
    if known is not None and known[0] is func:
        return known[1]
    parts = _split(func)
    if len(_PARTS) > 2000:
        _PARTS.clear()  # bounded: entries keep their trees alive
    _PARTS[id(func)] = (func, parts)
    return parts


def _split(func: cst.FunctionDef) -> Optional[Parts]:
    yields = yields_in(func.body)
    if len(yields) != 1 or not isinstance(func.body, cst.IndentedBlock):
        return None
    only = yields[0]
    if only.value is not None and any(type(n) is cst.Call for n in walk(only.value)):
        return None  # `yield self.prepare(opt)`: work done at the `yield` itself
    body = list(func.body.body)
    for index, stmt in enumerate(body):
        if _yield_statement(stmt, only):
            return body[:index], body[index + 1:]
        if isinstance(stmt, cst.Try) and isinstance(stmt.body, cst.IndentedBlock):
            inner = list(stmt.body.body)
            for at, inner_stmt in enumerate(inner):
                if _yield_statement(inner_stmt, only):
                    after = inner[at + 1:]
                    after += _statements(stmt.orelse.body) if stmt.orelse is not None else []
                    after += _statements(stmt.finalbody.body) if stmt.finalbody is not None else []
                    return body[:index] + inner[:at], after + body[index + 1:]
    return None


def _yield_statement(stmt: cst.CSTNode, only: cst.Yield) -> bool:
    """Is `stmt` the line `yield ...` or `name = yield ...` holding `only`?"""
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return False
    small = stmt.body[0]
    if isinstance(small, cst.Expr):
        return small.value is only
    if isinstance(small, (cst.Assign, cst.AnnAssign)):
        return small.value is only
    return False


def _statements(suite: cst.BaseSuite) -> List[cst.BaseStatement]:
    if isinstance(suite, cst.IndentedBlock):
        return list(suite.body)
    return []


"""Names in a module: dotted text of expressions and what imported names stand for.

`import torch.nn.functional as F` makes `F.mse_loss` mean `torch.nn.functional.mse_loss`; rules ask
for qualified names so that aliases (`import torch as T`, `from torch.autograd import grad`) are seen
through. Only module-level imports and imports inside functions are read; nothing is executed.
"""

from __future__ import annotations

from typing import Optional

import libcst as cst


def dotted(expr: cst.BaseExpression) -> Optional[str]:
    """`a.b.c` for a Name/Attribute chain, else None (calls, subscripts, literals...)."""
    # Exact type tests: LibCST's node classes are final, and `isinstance` on them goes through
    # ABCMeta (about ten times slower; this runs for most expressions of an analysed file).
    if type(expr) is cst.Name:
        return expr.value
    parts = []
    while type(expr) is cst.Attribute:
        parts.append(expr.attr.value)
        expr = expr.value
    if type(expr) is not cst.Name:
        return None
    parts.append(expr.value)
    return ".".join(reversed(parts))


def _module_name(node: cst.BaseExpression) -> str:
    text = dotted(node)  # import targets are always Name/Attribute chains
    return text or ""


class ImportMap:
    """Local name -> fully qualified name, from every import statement in the module."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        # Modules whose names `from M import *` brings in (`.base_trainer`, `base`), in order:
        # the names are not listed here; the analysis looks them up in those modules when needed.
        self.stars: list[str] = []

    @classmethod
    def of(cls, module: cst.Module) -> "ImportMap":
        # Imports are statements, so only statements are walked: a visitor over every expression
        # of a large module costs more than parsing it.
        imports = cls()
        collector = _ImportCollector(imports.aliases, imports.stars)
        for stmt in _all_statements(module.body):
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, (cst.Import, cst.ImportFrom)):
                        small.visit(collector)
        return imports

    def resolve(self, expr: cst.BaseExpression) -> Optional[str]:
        """Qualified name of `expr` when its head is an imported name, else its dotted text."""
        text = dotted(expr)
        if text is None:
            return None
        head, _, rest = text.partition(".")
        target = self.aliases.get(head)
        if target is None:
            return text
        return f"{target}.{rest}" if rest else target

    def is_torch(self, expr: cst.BaseExpression, *qualnames: str) -> bool:
        """Does `expr` name one of `qualnames` (e.g. "torch.autograd.grad") through the imports?"""
        name = self.resolve(expr)
        return name is not None and name in qualnames


def _all_statements(stmts):
    """Every statement in `stmts`, nested ones (bodies, else, handlers, finally, cases) included."""
    for stmt in stmts:
        yield stmt
        if isinstance(stmt, cst.SimpleStatementLine):
            continue
        for block in _blocks(stmt):
            yield from _all_statements(block)


def _blocks(stmt: cst.CSTNode):
    """The statement lists directly inside a compound statement."""
    parts = [getattr(stmt, "body", None), getattr(stmt, "orelse", None), getattr(stmt, "finalbody", None)]
    parts += [h.body for h in getattr(stmt, "handlers", ()) or ()]
    parts += [c.body for c in getattr(stmt, "cases", ()) or ()]
    for part in parts:
        if part is None:
            continue
        if isinstance(part, cst.If):  # elif
            yield [part]
            continue
        if isinstance(part, (cst.Else, cst.Finally)):
            part = part.body
        if isinstance(part, cst.IndentedBlock):
            yield part.body
        elif isinstance(part, cst.SimpleStatementSuite):
            yield [cst.SimpleStatementLine(body=part.body)]


class _ImportCollector(cst.CSTVisitor):
    def __init__(self, aliases: dict[str, str], stars: list[str]) -> None:
        self.aliases = aliases
        self.stars = stars

    def visit_Import(self, node: cst.Import) -> bool:
        for alias in node.names:
            full = _module_name(alias.name)
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.aliases[alias.asname.name.value] = full
            else:
                head = full.split(".")[0]
                self.aliases.setdefault(head, head)
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        if node.relative or node.module is None:
            base = "." * len(node.relative) + (_module_name(node.module) if node.module else "")
        else:
            base = _module_name(node.module)
        if isinstance(node.names, cst.ImportStar):
            if base and base not in self.stars:
                self.stars.append(base)
            return False
        for alias in node.names:
            name = _module_name(alias.name)
            local = name
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                local = alias.asname.name.value
            self.aliases[local] = f"{base}.{name}" if base else name
        return False

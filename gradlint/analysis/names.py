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
    parts = []
    while isinstance(expr, cst.Attribute):
        parts.append(expr.attr.value)
        expr = expr.value
    if not isinstance(expr, cst.Name):
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

    @classmethod
    def of(cls, module: cst.Module) -> "ImportMap":
        imports = cls()
        module.visit(_ImportCollector(imports.aliases))
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


class _ImportCollector(cst.CSTVisitor):
    def __init__(self, aliases: dict[str, str]) -> None:
        self.aliases = aliases

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
            return False
        for alias in node.names:
            name = _module_name(alias.name)
            local = name
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                local = alias.asname.name.value
            self.aliases[local] = f"{base}.{name}" if base else name
        return False

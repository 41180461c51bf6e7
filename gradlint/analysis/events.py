"""Gradient events (backward / step / clear), requests to follow a helper's body, and the scope
a piece of code is analysed in (which module, what a helper's parameters are bound to).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Tuple, Union

import libcst as cst

from gradlint.analysis.names import dotted
from gradlint.analysis.object_kinds import norm

if TYPE_CHECKING:
    from gradlint.analysis.facts import ModuleFacts

ALL = "*"  # target of a clear that clears every optimizer (model.zero_grad(), p.grad = None)

BACKWARD = "backward"
STEP = "step"
CLEAR = "clear"

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


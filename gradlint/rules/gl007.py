"""GL007 loss-made-leaf: a loss made to require grad, so that its backward reaches no parameter.

`loss.requires_grad = True`, `loss.requires_grad_()`, `torch.tensor(loss.item(), requires_grad=True)`
or `Variable(loss.data, requires_grad=True)` silence "element 0 of tensors does not require grad
and does not have a grad_fn" by making the loss a new *leaf*: the backward then runs, reaches no
parameter, every gradient stays None or zero, and the model silently never trains. The real fix is
to find where the graph was cut (`.item()`, `.detach()`, `.data`, `torch.no_grad()`, numpy) and
compute the loss from the model's outputs. Inputs made to require grad for saliency maps or
adversarial examples, unfrozen parameters and hand-made parameters are not reported: their
backward passes the model's parameters. The facts live in `gradlint.analysis.leaves`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from gradlint.findings import Finding
from gradlint.rules import Needs, Rule

if TYPE_CHECKING:  # pragma: no cover - types only; the analysis is imported by `check`
    from gradlint.analysis import Context

# A file must contain one of these words for the rule to possibly fire.
NEEDS_WORDS = ("requires_grad",)


def check(ctx: Context) -> Iterable[Finding]:
    """One error per leaf made from a computed value and then backpropagated on its own."""
    from gradlint.analysis.leaves import made_leaves

    if not ctx.lifetime_survey.leaf_backward:
        return  # no leaf is made, or nothing runs a backward: no scope need be built
    analysis = ctx.lifetime_analysis
    if analysis is None:
        return
    for leaf in made_leaves(analysis):
        backward = _short(ctx.code(leaf.backward.node))
        message = (
            f"this makes `{leaf.leaf}` a new leaf cut off from the graph that computed `{_short(leaf.source)}`: "
            f"`{backward}` then reaches no parameter and the model does not train; compute the loss from the "
            f"model's outputs and remove what cut the graph (`.item()`, `.detach()`, `.data`, `torch.no_grad()`)"
        )
        yield ctx.finding(RULE.code, leaf.node, message, related=[leaf.backward.node])


def _short(code: str, limit: int = 50) -> str:
    code = " ".join(code.split())
    return code if len(code) <= limit else code[: limit - 3] + "..."


RULE = Rule(
    code="GL007",
    name="loss-made-leaf",
    summary="a loss made to require grad as a new leaf, so that its backward reaches no parameter",
    severity="error",
    default_on=True,
    tags=("correctness", "pytorch", "autograd"),
    gitlab_category="Bug Risk",
    # The leaf matters only to a backward of the same file (`made_leaves` pairs each leaf with a
    # real backward call), so the code must also read a backward's name: a file that only
    # mentions `requires_grad` (most of torch's own sources) cannot hold a finding.
    needs=Needs(words=NEEDS_WORDS, names=("backward", "manual_backward"), autograd_names=("grad",)),
    check=check,
)

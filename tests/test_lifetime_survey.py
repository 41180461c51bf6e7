"""The one-pass survey that decides whether GL006-GL008 need the scopes built at all
(gradlint.analysis.lifetimes.survey): it must never say "no" where a rule could fire."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from gradlint.analysis.lifetimes import survey
from gradlint.analysis.names import ImportMap


def _survey(source: str, backward_functions=()):
    module = cst.parse_module(textwrap.dedent(source))
    return survey(module, ImportMap.of(module), tuple(backward_functions))


@pytest.mark.parametrize("source, loop, leaf", [
    ("for x in data:\n    loss(x).backward()\n", True, False),
    ("while True:\n    if ok:\n        torch.autograd.grad(y, [w])\n", True, False),
    ("for x in data:\n    pass\nelse:\n    loss.backward()\n", False, False),  # the else runs once
    ("for x in [l.backward() for l in losses]:\n    pass\n", False, False),  # the header runs once
    ("def step(loss):\n    loss.backward()\nfor x in data:\n    step(x)\n", False, False),  # helper: not real
    ("loss = torch.tensor(v, requires_grad=True)\nloss.backward()\n", False, True),
    ("loss.requires_grad = True\nfor b in data:\n    loss.backward()\n", True, True),
    ("x.requires_grad_()\n", False, False),  # a leaf, but nothing runs a backward
    ("for b in data:\n    self.manual_backward(loss)\n    w.requires_grad_(True)\n", True, True),
])
def test_survey_flags(source, loop, leaf):
    found = _survey(source)
    assert (found.loop_backward, found.leaf_backward) == (loop, leaf)


def test_holders_are_the_functions_and_classes_around_backward_like_calls():
    found = _survey("""
        class Trainer:
            def fit(self):
                for b in self.data:
                    self.step(b)

            def step(self, b):
                self.model(b).sum().backward()

        def unrelated():
            return 1
    """)
    names = sorted(node.name.value for node in found.holders)
    assert names == ["Trainer", "fit", "step"]
    assert _survey("x = 1\n").holders is None
    assert _survey("def f(l):\n    run(l)\n", ["run"]).holders is not None  # a configured helper

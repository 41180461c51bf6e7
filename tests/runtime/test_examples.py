"""Every runnable example in rules/examples runs under the tracer and its verdict is asserted:
GL00N_bad_* -> GL00N confirmed; GL00N_good_* -> nothing of GL00N confirmed."""

from __future__ import annotations

import glob
import os
import re

import pytest

from runtime_helpers import EXAMPLES, run_traced

from gradlint.findings import RULES
from gradlint.runtime.judges import BY_RULE_NAME


def _judged(code: str) -> bool:
    """Does the rule have a runtime judge (declared with it, or found by its name)?"""
    rule = RULES[code]
    return rule.judge is not None or rule.name in BY_RULE_NAME


# Examples of the rules that have a runtime judge (a rule without one is never confirmed).
EXAMPLE_FILES = sorted(
    p for p in glob.glob(os.path.join(EXAMPLES, "GL00[1-9]_*.py")) if _judged(os.path.basename(p)[:5])
)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[os.path.basename(p) for p in EXAMPLE_FILES])
def test_example_verdict(path):
    code, kind = re.match(r"(GL\d{3})_(bad|good)_", os.path.basename(path)).groups()
    traced = run_traced(path)
    assert traced.observations.internal_errors == 0, traced.observations.first_error
    confirmed = [f for f in traced.confirmed() if f.code == code]
    if kind == "bad":
        assert confirmed, f"{code} not confirmed; findings: {traced.findings()}"
        assert all(f.evidence for f in confirmed)
        # The static rule's finding is the one confirmed (joined by line), when the rule flags it.
        static = [f for f in traced.findings() if f.code == code and f.static]
        assert all(f.runtime == "confirmed" for f in static), static
    else:
        assert not confirmed, f"{code} confirmed on a correct example: {confirmed}"


def test_examples_exist():
    # The catalogue ships bad and good examples for every runtime-checked rule.
    names = {os.path.basename(p)[:9] for p in EXAMPLE_FILES}
    assert {"GL001_bad", "GL001_goo", "GL002_bad", "GL002_goo", "GL003_bad", "GL003_goo"} <= names

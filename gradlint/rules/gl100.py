"""GL100 unused-noqa: a `# noqa` comment that suppresses nothing.

Reported by the suppression pass (gradlint/suppression.py) after every other rule has run, so a
file with a `noqa` comment is analysed with all selected rules (`Needs.all_rules`). Off by default.
"""

from __future__ import annotations

from gradlint.rules import Needs, Rule

RULE = Rule(
    code="GL100",
    name="unused-noqa",
    summary="a `# noqa` comment that suppresses nothing",
    severity="warning",
    default_on=False,
    tags=("pytorch",),
    gitlab_category="Bug Risk",
    needs=Needs(words=("noqa",), fold_case=True, all_rules=True),
    role="unused-noqa",
)

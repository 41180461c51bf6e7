"""GL000 parse-error: a file that cannot be decoded or parsed.

Reported by the engine's source stage (gradlint/source.py), never by a check: a file that does not
decode or parse has no tree to check. It is always on unless ignored by name.
"""

from __future__ import annotations

from gradlint.rules import Rule

RULE = Rule(
    code="GL000",
    name="parse-error",
    summary="a file that cannot be decoded or parsed",
    severity="error",
    default_on=True,
    tags=("correctness",),
    gitlab_category="Bug Risk",
    precision="very-high",
    role="parse-error",
)

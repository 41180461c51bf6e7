"""Reporters turn findings into text. Each format is a module with
`render(findings: list[Finding], ctx: ReportContext) -> str`, imported only when chosen.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Optional

from gradlint.findings import Finding, RuleInfo

FORMATS = {
    "full": "gradlint.reporters.text:render_full",
    "concise": "gradlint.reporters.text:render_concise",
    "json": "gradlint.reporters.json:render",
    "github": "gradlint.reporters.github:render",
    "sarif": "gradlint.reporters.sarif:render",
    "gitlab": "gradlint.reporters.gitlab:render",
}


@dataclass
class ReportContext:
    """What a reporter may need besides the findings."""

    cwd: str  # absolute; paths in findings are relative to it when under it
    rules: list[RuleInfo]  # the rules that ran (SARIF lists them)
    files_checked: int = 0
    # path (as in findings) -> full text of that file, for source excerpts and fingerprints
    source_of: Callable[[str], Optional[str]] = lambda path: None
    statistics: bool = False
    extra: dict = field(default_factory=dict)


def renderer(name: str) -> Callable[[list[Finding], ReportContext], str]:
    module, _, func = FORMATS[name].partition(":")
    return getattr(importlib.import_module(module), func)

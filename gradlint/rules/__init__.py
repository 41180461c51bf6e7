"""The rules. Each lives in its own module with a `check(ctx) -> Iterable[Finding]` function
(or a small class whose docstring says what and why); they read facts from the analysis layer.
Rule modules are imported only when a run selects them.
"""

from __future__ import annotations

import importlib
from typing import Callable, Iterable, Optional

# code -> module implementing it; GL000 (parse error) is produced by the engine itself,
# GL100 (unused noqa) by the suppression pass.
RULE_MODULES = {
    "GL001": "gradlint.rules.gl001",
    "GL002": "gradlint.rules.gl002",
    "GL003": "gradlint.rules.gl003",
    "GL004": "gradlint.rules.gl004",
    "GL005": "gradlint.rules.gl005",
}


def checks_for(codes: Optional[Iterable[str]] = None) -> list[Callable]:
    wanted = RULE_MODULES.keys() if codes is None else [c for c in RULE_MODULES if c in set(codes)]
    return [importlib.import_module(RULE_MODULES[code]).check for code in wanted]

"""The shared analysis layer: parse once, compute training-loop facts once, run the rules.

`analyze(source, path, options, checks)` is the only entry the engine uses. It raises
`libcst.ParserSyntaxError` for a file that does not parse (the engine reports that as a parse
error). The per-file `Context` (gradlint/analysis/context.py) holds what rules share, as typed,
cached properties. This package's own module imports no LibCST (the prefilter uses
`gradlint.analysis.imports` before any parse); `Context` and `analyze` load it on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover - types only
    from gradlint.analysis.context import Context as Context
    from gradlint.findings import Finding


@dataclass(frozen=True)
class AnalysisOptions:
    """What the project's configuration tells the analysis (names of its own helpers)."""

    backward_functions: tuple[str, ...] = ()  # project helpers that run a backward pass
    step_functions: tuple[str, ...] = ()  # project helpers that step an optimizer
    clear_functions: tuple[str, ...] = ()  # project helpers that clear gradients
    project_root: Optional[str] = None  # where imported project modules are looked up


def analyze(source: str, path: str, options: AnalysisOptions,
            checks: Sequence[Callable[[Context], Iterable[Finding]]]) -> List[Finding]:
    """The findings of `checks` (rules' check functions, chosen by the engine from the rule
    declarations) on one file's text, sorted. The analysis does not know the rules."""
    from gradlint.analysis.context import analyze as run

    return run(source, path, options, checks)


def __getattr__(name: str) -> Any:
    if name == "Context":
        from gradlint.analysis.context import Context

        return Context
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

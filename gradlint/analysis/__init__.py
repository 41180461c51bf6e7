"""The shared analysis layer: parse once, compute training-loop facts once, run the rules.

`analyze(source, path, options, checks)` is the only entry the engine uses. It raises
`libcst.ParserSyntaxError` for a file that does not parse (the engine reports that as a parse
error). The per-file `Context` (gradlint/analysis/context.py) holds what rules share, as typed,
cached properties. This package's own module imports no LibCST (the prefilter uses
`gradlint.analysis.imports` before any parse); `Context` and `analyze` load it on first use.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Optional, Sequence, Set

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


# The set that collects, while a file is analysed, the other project files the analysis read to
# decide its findings (callers of its functions, ...); see `collecting_consulted_files`.
CONSULTED: "ContextVar[Optional[Set[str]]]" = ContextVar("gradlint_consulted_files", default=None)


@contextmanager
def collecting_consulted_files() -> Iterator[Set[str]]:
    """Collect the paths of the project files the analysis reads while in this block, so that a
    cache of the file's findings can depend on them (`with collecting_consulted_files() as read:`)."""
    files: Set[str] = set()
    token = CONSULTED.set(files)
    try:
        yield files
    finally:
        CONSULTED.reset(token)


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

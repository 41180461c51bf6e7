"""The per-file analysis context: one parsed file and the facts rules share about it.

Facts are typed properties computed on first use and kept for the file's other rules
(`ctx.training_facts`, `ctx.retain_verdicts`, `ctx.nonscalar_roots`); positions are resolved only
once a rule reports something.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from gradlint.analysis import AnalysisOptions
from gradlint.analysis.names import ImportMap
from gradlint.findings import RULES, Finding, Fix

if TYPE_CHECKING:  # pragma: no cover - types only
    from gradlint.analysis.facts import ModuleFacts
    from gradlint.analysis.graphs import Verdict
    from gradlint.analysis.lifetimes import Survey
    from gradlint.analysis.ordering import LoopInfo
    from gradlint.analysis.retained import GraphAnalysis


class Context:
    """One parsed file and what rules share about it. Facts are computed on first use."""

    def __init__(self, module: cst.Module, path: str, options: AnalysisOptions) -> None:
        self.module = module
        self.path = path
        self.options = options
        self.imports = ImportMap.of(module)
        self._positions: Optional[Mapping[cst.CSTNode, CodeRange]] = None
        # Other project files an analysis read to decide this file's findings (e.g. the callers
        # of its functions): a cache of this file's findings depends on them too.
        from gradlint.analysis import CONSULTED

        collector = CONSULTED.get()
        self.consulted_files: Set[str] = collector if collector is not None else set()

    @cached_property
    def training_facts(self) -> ModuleFacts:
        """The module's training-loop facts: loops, optimizers, backward/step/clear events."""
        from gradlint.analysis.facts import module_facts

        return module_facts(self.module, self.path, self.imports)

    @cached_property
    def retain_verdicts(self) -> List[Verdict]:
        """The `retain_graph=True` backward calls proven unnecessary (no later backward walks
        the retained graph)."""
        from gradlint.analysis.graphs import unnecessary_retains

        return list(unnecessary_retains(self.module, self.imports, self.options.backward_functions, self.path,
                                        self.options.project_root, self.consulted_files))

    @cached_property
    def lifetime_survey(self) -> Survey:
        """One pass over the module before any scope is built: the functions that run a backward,
        and whether a loop body runs one (kept histories, carried states) or a leaf is made in a
        file that runs one (made leaves). Rules ask it first: without those, no scope is built."""
        from gradlint.analysis.lifetimes import survey

        return survey(self.module, self.imports, self.options.backward_functions)

    @cached_property
    def lifetime_analysis(self) -> Optional[GraphAnalysis]:
        """GL002's def-use scopes of the functions that run a backward (None when none does), shared
        by the graph-lifetime rules (kept histories, leaves made of losses, carried states)."""
        from gradlint.analysis.lifetimes import build_analysis

        holders = self.lifetime_survey.holders
        if holders is None:
            return None
        return build_analysis(self.module, self.imports, self.options.backward_functions, holders)

    @cached_property
    def nonscalar_roots(self) -> List[Tuple[Any, cst.CSTNode, Any]]:
        """(backward call, root expression, shape) of each backward without a gradient whose
        root is proven to hold several elements."""
        from gradlint.analysis.scalars import nonscalar_roots

        return list(nonscalar_roots(self.module, self.imports, self.path, self.options.project_root))

    @cached_property
    def ordering_loops(self) -> List[LoopInfo]:
        """The loops that step or run a backward, with what happens to gradients in order:
        clips, unscales, scaled backwards, `.grad` reads, clears and steps."""
        from gradlint.analysis.ordering import ordering_loops

        return ordering_loops(self)

    def position(self, node: cst.CSTNode) -> CodeRange:
        # Resolving positions costs about twice the parse, so it is done only once a rule
        # actually reports something. unsafe_skip_copy keeps our node identities valid.
        if self._positions is None:
            wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
            self._positions = wrapper.resolve(PositionProvider)
        return self._positions[node]

    def finding(self, code: str, node: cst.CSTNode, message: str, fix: Optional[Fix] = None,
                help: Optional[str] = None, severity: Optional[str] = None,
                related: Sequence[cst.CSTNode] = ()) -> Finding:
        """A finding of `code` on `node`: `message` says what is wrong, `help` (one line) how to fix
        it; `severity` overrides the rule's declared one for this finding only; `related` are the
        calls it is about elsewhere (their first lines become `Finding.related`)."""
        where = self.position(node)
        return Finding(
            code=code,
            message=message,
            path=self.path,
            line=where.start.line,
            column=where.start.column + 1,
            end_line=where.end.line,
            end_column=where.end.column + 1,
            severity=severity or RULES[code].severity,
            fix=fix,
            help=help,
            related=tuple(sorted({self.position(other).start.line for other in related})),
        )

    def code(self, node: cst.CSTNode) -> str:
        """Source text of a node, for messages."""
        return self.module.code_for_node(node)

    def offset(self, line: int, column: int) -> int:
        """Character offset into the file's text of a position as PositionProvider gives it
        (1-based line, 0-based column), for the `Edit`s of a fix."""
        starts = self.line_starts
        if line - 1 >= len(starts):
            return len(self.module.code)
        return starts[line - 1] + column

    @cached_property
    def line_starts(self) -> List[int]:
        """Offset of each line's first character in the file's text. LibCST round-trips the
        text exactly, so offsets into module.code are offsets into the file."""
        starts = [0]
        starts.extend(m.end() for m in re.finditer(r"\r\n|\r|\n", self.module.code))
        return starts


def analyze(source: str, path: str, options: AnalysisOptions,
            checks: Sequence[Callable[[Context], Iterable[Finding]]]) -> List[Finding]:
    """Parse once, then every check on the one shared context; findings sorted."""
    from gradlint.analysis.tree import forget_trees

    module = cst.parse_module(source)
    ctx = Context(module, path, options)
    findings: List[Finding] = []
    try:
        for check in checks:
            findings.extend(check(ctx))
    finally:
        forget_trees()  # the walk indexes keep their trees alive: none outlives the file
    findings.sort(key=Finding.sort_key)
    return findings

"""The shared analysis layer: parse once, compute training-loop facts once, run the rules.

`analyze(source, path, options)` is the only entry the engine uses. It raises
`libcst.ParserSyntaxError` for a file that does not parse (the engine reports that as GL000).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from gradlint.analysis.names import ImportMap
from gradlint.findings import RULES, Finding, Fix


@dataclass(frozen=True)
class AnalysisOptions:
    """What the project's configuration tells the analysis (names of its own helpers)."""

    backward_functions: tuple[str, ...] = ()  # project helpers that run a backward pass
    step_functions: tuple[str, ...] = ()  # project helpers that step an optimizer
    clear_functions: tuple[str, ...] = ()  # project helpers that clear gradients
    project_root: Optional[str] = None  # where imported project modules are looked up


class Context:
    """One parsed file and what rules share about it. Facts are computed on first use."""

    def __init__(self, module: cst.Module, path: str, options: AnalysisOptions) -> None:
        self.module = module
        self.path = path
        self.options = options
        self.imports = ImportMap.of(module)
        self._positions = None
        self._facts: dict = {}

    def fact(self, key: str, compute):
        """Memoise a fact shared between rules: `ctx.fact("loops", lambda: ...)`."""
        if key not in self._facts:
            self._facts[key] = compute()
        return self._facts[key]

    def position(self, node: cst.CSTNode) -> CodeRange:
        # Resolving positions costs about twice the parse, so it is done only once a rule
        # actually reports something. unsafe_skip_copy keeps our node identities valid.
        if self._positions is None:
            wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
            self._positions = wrapper.resolve(PositionProvider)
        return self._positions[node]

    def finding(self, code: str, node: cst.CSTNode, message: str, fix: Optional[Fix] = None) -> Finding:
        where = self.position(node)
        return Finding(
            code=code,
            message=message,
            path=self.path,
            line=where.start.line,
            column=where.start.column + 1,
            end_line=where.end.line,
            end_column=where.end.column + 1,
            severity=RULES[code].severity,
            fix=fix,
        )

    def code(self, node: cst.CSTNode) -> str:
        """Source text of a node, for messages."""
        return self.module.code_for_node(node)

    def offset(self, line: int, column: int) -> int:
        """Character offset into the file's text of a position as PositionProvider gives it
        (1-based line, 0-based column), for the `Edit`s of a fix."""
        starts = self.fact("_line_starts", self._line_starts)
        if line - 1 >= len(starts):
            return len(self.module.code)
        return starts[line - 1] + column

    def _line_starts(self) -> list:
        # LibCST round-trips the text exactly, so offsets into module.code are offsets into the file.
        import re

        starts = [0]
        starts.extend(m.end() for m in re.finditer(r"\r\n|\r|\n", self.module.code))
        return starts


def analyze(source: str, path: str, options: AnalysisOptions = AnalysisOptions(), codes=None) -> list[Finding]:
    """All findings of the rules in `codes` (default: every rule) for one file's text."""
    from gradlint.rules import checks_for

    module = cst.parse_module(source)
    ctx = Context(module, path, options)
    findings: list[Finding] = []
    for check in checks_for(codes):
        findings.extend(check(ctx))
    findings.sort(key=Finding.sort_key)
    return findings

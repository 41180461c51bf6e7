"""What every stage of gradlint passes along: the rule table and the Finding record.

Data flows one way: files -> parse -> training-loop facts -> rules -> findings -> reporters.
This module is the end of that pipe that everyone shares, so it imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Optional, Tuple

# The rule table lives with the rule declarations (gradlint/rules/); re-exported here because
# every stage that handles findings also asks about their rules.
from gradlint.rules import RULES, Rule, RuleInfo

__all__ = ["RULES", "Rule", "RuleInfo", "Edit", "Fix", "Finding"]


@dataclass(frozen=True)
class Edit:
    """Replace source[start:end] (character offsets into the file's text) with `text`."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Fix:
    description: str
    edits: tuple[Edit, ...]
    # "safe": keeps the program's meaning (applied by --fix); "unsafe": may change it
    applicability: str = "safe"


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    path: str  # display path: relative to cwd when under it, else as given
    line: int  # 1-based
    column: int  # 1-based
    end_line: int
    end_column: int  # 1-based, exclusive (the column after the last character)
    severity: str = "error"
    fix: Optional[Fix] = None
    # How to fix it, one line shown under the finding (`= help: ...`); the message says what is wrong.
    help: Optional[str] = None
    cell: Optional[int] = None  # notebooks: 1-based code cell; line/column are then within the cell
    # Filled in by `gradlint run` only.
    runtime: Optional[str] = None  # "confirmed" | "refuted" | "unexercised"
    evidence: Optional[str] = None
    static: bool = True
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    # Lines (same file, same numbering as `line`) of the calls the finding is about when they are
    # not on its own lines: the backward whose graph a GL006 store keeps, the backward a GL007 leaf
    # is run through. `gradlint run` joins the finding to the sites that ran there. Not in reports.
    related: Tuple[int, ...] = field(default=(), compare=False, hash=False)

    @property
    def name(self) -> str:
        info = RULES.get(self.code)
        return info.name if info else self.code

    def sort_key(self) -> tuple:
        return (self.path, self.cell or 0, self.line, self.column, self.code)

    def with_(self, **changes) -> "Finding":
        return replace(self, **changes)

    def to_json(self) -> dict:
        out = {
            "code": self.code,
            "name": self.name,
            "message": self.message,
            "severity": self.severity,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "fixable": self.fix is not None,
        }
        if self.help is not None:
            out["help"] = self.help
        if self.cell is not None:
            out["cell"] = self.cell
        if self.fix is not None:
            out["fix"] = {
                "description": self.fix.description,
                "applicability": self.fix.applicability,
                "edits": [asdict(e) for e in self.fix.edits],
            }
        if self.runtime is not None or not self.static:
            out["runtime"] = self.runtime
            out["evidence"] = self.evidence
            out["static"] = self.static
        return out

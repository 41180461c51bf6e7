"""The rules: one declaration each, and the registry every other part of gradlint reads.

Each rule lives in its own module `gradlint/rules/glNNN.py` that binds one `RULE = Rule(...)`. The
registry finds those modules by name (no list to keep in step), and everything that talks about
rules derives from the declarations: the rule table (`gradlint rules`), `explain`, the
configuration's selectors, the prefilter (`Rule.needs`), SARIF rule metadata and tags, GitLab
categories and the runtime verdicts of `gradlint run`. Adding a rule GL004 means adding
`gl004.py`, its page `rules/GL004.md`, its examples `rules/examples/GL004/{bad,good}*.py` and its
tests, and touching nothing else.

Declarations must import without LibCST or torch (`gradlint check` on a warm cache loads them):
rule modules import the analysis inside their `check` functions.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Set, Tuple

# A rule module's name: gl + three digits (the code, lower case).
_MODULE_NAME = re.compile(r"^gl\d{3}$")

SEVERITIES = ("error", "warning", "note")
APPLICABILITIES = ("safe", "unsafe")


@dataclass(frozen=True)
class Needs:
    """What a file must contain for a rule to possibly fire (the engine's prefilter).

    - `words`: the file's text must contain one of these (stage one, a substring test;
      `fold_case` compares lower-cased text). A file naming none of any selected rule's words
      is not parsed at all.
    - `names`: when not empty, the module's compiled code must also read one of these names
      (stage two: attributes, globals or imported names actually used, not merely bound, so a
      word in a docstring or `def backward` of an autograd Function does not count).
      `autograd_names` count only when the module names `torch.autograd` at all.
      A file CPython cannot compile is always analysed (LibCST decides).
    - `defines`: names that also admit a file in stage two when the module binds them at all
      (a `def training_step` whose return value Lightning backpropagates: nothing reads it).
    - `helpers`: a call of a configured helper (backward/step/clear functions) or of a project
      function, imported from another module, whose body meets these needs also admits the
      file (a backward run inside an imported helper).
    - `all_rules`: when this rule's needs are met, every selected rule must run on the file
      (unused-noqa must see what every rule would have reported).
    """

    words: Tuple[str, ...] = ()
    names: Tuple[str, ...] = ()
    autograd_names: Tuple[str, ...] = ()
    defines: Tuple[str, ...] = ()
    helpers: bool = False
    fold_case: bool = False
    all_rules: bool = False


# (per-file analysis Context) -> findings (gradlint.findings.Finding; not imported: findings imports this)
Check = Callable[[Any], Iterable[Any]]
# (backward sites a finding covers, cwd, finding=the static finding, obs=the run's Observations)
# -> (verdict, evidence sentence)
Judge = Callable[..., Tuple[str, str]]
# (one backward site, cwd, does a static finding of the rule cover it?) -> runtime-only
# findings' (message, evidence, severity or None for the rule's)
# observe(site, cwd, covered, peers, ran): `peers` are the sites reported at the same line (call paths
# through it); `ran` the (path, line) of every traced backward's innermost user frame
Observe = Callable[[Any, str, bool, List[Any], Set[Tuple[str, int]]], List[Tuple[str, str, Optional[str]]]]


@dataclass(frozen=True)
class Rule:
    """One rule, declared once.

    `code` is stable (never renumbered or reused); `name` is the kebab-case alias accepted
    wherever a code is; `summary` is the one line shown by `gradlint rules` and SARIF.
    `fix` is None (not fixable), "safe" or "unsafe" (the applicability of the fixes it offers).
    `tags` go to SARIF; `gitlab_category` to the GitLab Code Quality report. `check(ctx)` yields
    findings (None for codes produced by the engine itself: parse errors, unused noqa).
    `judge` gives a finding's runtime verdict under `gradlint run`; `observe` turns a problem
    the tracer saw where no static finding of this rule points into findings of its own.
    """

    code: str
    name: str
    summary: str
    severity: str = "error"
    default_on: bool = True
    fix: Optional[str] = None
    tags: Tuple[str, ...] = ()
    gitlab_category: str = "Bug Risk"
    precision: str = "high"  # SARIF's precision property
    needs: Needs = Needs()
    role: Optional[str] = None  # "parse-error" | "unused-noqa": reported by the engine, not a check
    check: Optional[Check] = None
    judge: Optional[Judge] = None
    observe: Optional[Observe] = None

    def __post_init__(self) -> None:
        if not re.match(r"^GL\d{3}$", self.code):
            raise ValueError(f"rule code {self.code!r} is not GL + three digits")
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.code}: severity {self.severity!r} is not one of {SEVERITIES}")
        if self.fix is not None and self.fix not in APPLICABILITIES:
            raise ValueError(f"{self.code}: fix {self.fix!r} is not None or one of {APPLICABILITIES}")

    @property
    def fixable(self) -> bool:
        return self.fix is not None


def _discover() -> Dict[str, Rule]:
    import gradlint.rules as package

    found: Dict[str, Rule] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not _MODULE_NAME.match(info.name):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        rule = getattr(module, "RULE", None)
        if not isinstance(rule, Rule):
            raise TypeError(f"{module.__name__} declares no RULE = Rule(...)")
        if rule.code.lower() != info.name:
            raise ValueError(f"{module.__name__} declares {rule.code}: the module must be named after its code")
        found[rule.code] = rule
    return found


class _Registry(Mapping[str, Rule]):
    """code -> Rule, sorted by code; the rule modules are imported on first use."""

    def __init__(self) -> None:
        self._rules: Optional[Dict[str, Rule]] = None

    def _all(self) -> Dict[str, Rule]:
        if self._rules is None:
            self._rules = _discover()
        return self._rules

    def __getitem__(self, code: str) -> Rule:
        return self._all()[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"RULES({list(self)})"


RULES: Mapping[str, Rule] = _Registry()

# Backwards-compatible name of the declaration type (reporters and tests spoke of RuleInfo).
RuleInfo = Rule


def by_name_or_code(wanted: str) -> Optional[Rule]:
    """The rule whose code (any case) or name is `wanted`, or None."""
    rule = RULES.get(wanted.upper())
    if rule is not None:
        return rule
    return next((r for r in RULES.values() if r.name == wanted.lower()), None)


def checked(codes: Optional[Iterable[str]] = None) -> List[Rule]:
    """The rules with a check among `codes` (default: all), in code order."""
    wanted = None if codes is None else set(codes)
    return [r for c, r in RULES.items() if r.check is not None and (wanted is None or c in wanted)]


def checks_for(codes: Optional[Iterable[str]] = None) -> List[Check]:
    """The check functions of the rules among `codes` (default: every rule with a check)."""
    return [r.check for r in checked(codes) if r.check is not None]


def parse_error() -> Rule:
    """The rule the engine reports for a file it cannot decode or parse."""
    return _with_role("parse-error")


def unused_noqa() -> Rule:
    """The rule the suppression pass reports for a `# noqa` that silences nothing."""
    return _with_role("unused-noqa")


def _with_role(role: str) -> Rule:
    found = [r for r in RULES.values() if r.role == role]
    if len(found) != 1:
        raise LookupError(f"{len(found)} rules declare role={role!r}; exactly one must")
    return found[0]

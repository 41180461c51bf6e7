"""Join static findings with what the tracer observed, and turn observations into verdicts.

A finding matches a backward site when any user frame of the site's stack has the finding's path
and a line in [finding.line, finding.end_line] (so a GL001 finding on a helper's call site in the
loop matches the backward that runs inside the helper). Each finding of a rule that declares a
`judge` (gradlint/rules/) gets `runtime` = confirmed | refuted | unexercised and an `evidence`
sentence; a problem observed at a site that no static finding covers becomes a finding of its own
with `static=False` (the rule's `observe`). This module is only the join: what a verdict means for
each rule lives in that rule's module.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from gradlint.findings import RULES, Finding
from gradlint.paths import display_path
from gradlint.runtime import judges
from gradlint.runtime.judges import CONFIRMED, plural
from gradlint.runtime.events import MOVED_OTHERWISE, BackwardSite, Observations, Stack



def runtime_codes() -> Tuple[str, ...]:
    """The codes whose findings `gradlint run` judges."""
    return tuple(code for code, rule in RULES.items() if rule.judge is not None)


def where(stack: Optional[Stack], cwd: Optional[str] = None) -> str:
    """`path:line` of a stack's innermost frame, for evidence sentences."""
    if not stack:
        return "a backward outside the traced calls"
    path, line = stack[0]
    return f"{display_path(path, cwd)}:{line}"


class _SiteIndex:
    """Backward sites by (real path, line) of every user frame in their stacks."""

    def __init__(self, sites: Iterable[BackwardSite]) -> None:
        self.by_file: Dict[str, List[Tuple[int, BackwardSite]]] = {}
        for site in sites:
            for path, line in dict.fromkeys(site.stack):
                self.by_file.setdefault(path, []).append((line, site))

    def matching(self, finding: Finding, cwd: str) -> List[BackwardSite]:
        path = os.path.realpath(os.path.join(cwd, finding.path))
        end = max(finding.end_line, finding.line)
        found: Dict[int, BackwardSite] = {}
        for line, site in self.by_file.get(path, ()):
            if finding.line <= line <= end:
                found[id(site)] = site
        return list(found.values())


def manual_stale_evidence(sites: List[BackwardSite]) -> Optional[str]:
    """Evidence of stale gradients applied without an optimizer: a leaf in no optimizer whose value
    changed along its gradient between two backwards that accumulated into it with no clear in
    between. None unless every such change looked like an update: a hand-written update moves its
    leaves along their gradients every time, while an average of another model's weights (an EMA
    teacher) does so only where that model's gradient happens to point the same way."""
    manual = sum(s.manual_stale for s in sites)
    if not manual or any(s.count(MOVED_OTHERWISE) for s in sites):
        return None
    leaves = max(s.manual_stale_leaves for s in sites)
    return (
        f"{plural(manual, 'backward')} accumulated onto the uncleared gradients of "
        f"{plural(leaves, 'leaf tensor')} in no optimizer whose value had been updated since the previous "
        f"backward (a manual step re-applying stale gradients)"
    )


# ------------------------------------------------------------------------------ runtime-only findings
def _runtime_finding(code: str, site: BackwardSite, message: str, evidence: str, cwd: str,
                     severity: Optional[str] = None) -> Finding:
    path, line = site.where
    span = site.span if site.span and site.span[0] == line else (line, 1, line, 1)
    return Finding(
        code=code,
        message=message,
        path=display_path(path, cwd),
        line=span[0],
        column=span[1],
        end_line=span[2],
        end_column=span[3],
        severity=severity or RULES[code].severity,
        runtime=CONFIRMED,
        evidence=evidence,
        static=False,
    )


def runtime_only(obs: Observations, matched: Dict[str, set], cwd: str) -> List[Finding]:
    """Problems the tracer saw at sites no static finding of that rule covers (each rule's
    `observe`), in rule order per site."""
    out: List[Finding] = []
    observers = [(code, rule.observe) for code, rule in RULES.items() if rule.observe is not None]
    # A runtime-only finding sits on its site's innermost user line; every call path through that
    # line is a peer (a helper's backward called from two places is one line, two sites).
    reported: set = set()
    by_line: Dict[Tuple[str, int, str], List[BackwardSite]] = {}
    for site in obs.sites.values():
        by_line.setdefault((site.where[0], site.where[1], site.kind), []).append(site)
    ran: Set[Tuple[str, int]] = {(path, line) for path, line, _ in by_line}  # where traced backwards ran
    for site in obs.sites.values():
        peers = by_line[(site.where[0], site.where[1], site.kind)]
        for code, observe in observers:
            covered = id(site) in matched.get(code, set())
            for message, evidence, severity in observe(site, cwd, covered, peers, ran):
                finding = _runtime_finding(code, site, message, evidence, cwd, severity=severity)
                key = (code, finding.path, finding.line, finding.column, message)
                if key not in reported:  # one finding per line, however many call paths ran it
                    reported.add(key)
                    out.append(finding)
    out.extend(_extra_runtime_only(obs, matched, cwd))
    return out


def _extra_runtime_only(obs: Observations, matched: Dict[str, set], cwd: str) -> List[Finding]:
    """Runtime-only findings of rules whose runtime judges live in gradlint/runtime/judges.py,
    found through the rule table by rule name."""
    out: List[Finding] = []
    for code, info in RULES.items():
        spec = judges.BY_RULE_NAME.get(info.name)
        if spec is not None:
            out.extend(spec.runtime_only(obs, code, matched.get(code, set()), cwd))
    return out


def loose_leaf_note(obs: Observations) -> Optional[str]:
    """Informational (not a finding): leaves in no optimizer that carried gradients across backward
    calls without a clear. Intentional for saliency maps, Fisher information, or reading `.grad`
    after several backwards; a mistake when they were meant to be trained."""
    leaves = sum(s.loose_leaves for s in obs.sites.values() if s.loose_leaves > 0)
    if not leaves:
        return None
    return (f"note: {plural(leaves, 'leaf tensor')} in no optimizer accumulated gradients across backward "
            f"calls without a clear (fine for saliency maps or Fisher information; add them to an optimizer "
            f"if they should train)")


# ------------------------------------------------------------------------------ the join
def judge(static: Sequence[Finding], obs: Observations, *, cwd: Optional[str] = None,
          enabled: Optional[Callable[[str, str], bool]] = None) -> List[Finding]:
    """Static findings with runtime verdicts, plus runtime-only findings; sorted.

    `enabled(code, display_path)` filters runtime-only findings like select/ignore filter static ones.
    """
    cwd = os.path.abspath(cwd or os.getcwd())
    index = _SiteIndex(obs.sites.values())
    matched: Dict[str, set] = {}
    out: List[Finding] = []
    for finding in static:
        rule = RULES.get(finding.code)
        judge_one = rule.judge if rule is not None else None
        if judge_one is None:
            extra = _extra_judge(finding, obs, matched, cwd)
            out.append(finding if extra is None else extra)
            continue
        sites = index.matching(finding, cwd)
        for site in sites:
            matched.setdefault(finding.code, set()).add(id(site))
        verdict, evidence = judge_one(sites, cwd, finding=finding, obs=obs)
        if obs.ranks > 1:
            evidence += f" (merged over {obs.ranks} ranks)"
        out.append(finding.with_(runtime=verdict, evidence=evidence))
    for finding in runtime_only(obs, matched, cwd):
        if enabled is None or enabled(finding.code, finding.path):
            if obs.ranks > 1:
                finding = finding.with_(evidence=f"{finding.evidence} (merged over {obs.ranks} ranks)")
            out.append(finding)
    out.sort(key=Finding.sort_key)
    return out


def _extra_judge(finding: Finding, obs: Observations, matched: Dict[str, set], cwd: str) -> Optional[Finding]:
    """A verdict from gradlint/runtime/judges.py for rules declared with one of its rule names."""
    info = RULES.get(finding.code)
    spec = judges.BY_RULE_NAME.get(info.name) if info is not None else None
    if spec is None:
        return None
    verdict, evidence, sites = spec.judge(finding, obs, cwd)
    for site in sites:
        matched.setdefault(finding.code, set()).add(id(site))
    if obs.ranks > 1:
        evidence += f" (merged over {obs.ranks} ranks)"
    return finding.with_(runtime=verdict, evidence=evidence)


def failing(findings: Iterable[Finding]) -> List[Finding]:
    """Findings that make `gradlint run` exit 1: confirmed or seen at runtime (notes excepted)."""
    return [f for f in findings if f.runtime == CONFIRMED and f.severity != "note"]

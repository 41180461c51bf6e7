"""Join static findings with what the tracer observed, and turn observations into verdicts.

A finding matches a backward site when any user frame of the site's stack has the finding's path
and a line in [finding.line, finding.end_line] (so a GL001 finding on a helper's call site in the
loop matches the backward that runs inside the helper). Each GL001-GL003 finding gets
`runtime` = confirmed | refuted | unexercised and an `evidence` sentence; a problem observed at a
site that no static finding covers becomes a finding of its own with `static=False`.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from gradlint.engine import display_path
from gradlint.findings import RULES, Finding
from gradlint.runtime import judges
from gradlint.runtime.events import BackwardSite, Observations, Stack

CONFIRMED, REFUTED, UNEXERCISED = "confirmed", "refuted", "unexercised"
RUNTIME_CODES = ("GL001", "GL002", "GL003")


def where(stack: Optional[Stack], cwd: Optional[str] = None) -> str:
    """`path:line` of a stack's innermost frame, for evidence sentences."""
    if not stack:
        return "a backward outside the traced calls"
    path, line = stack[0]
    return f"{display_path(path, cwd)}:{line}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


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


# ------------------------------------------------------------------------------ per-rule verdicts
def _manual_stale(sites: List[BackwardSite]) -> Optional[str]:
    """Evidence of stale gradients applied without an optimizer: a leaf in no optimizer whose value
    changed between two backwards that accumulated into it with no clear in between."""
    manual = sum(s.manual_stale for s in sites)
    if not manual:
        return None
    leaves = max(s.manual_stale_leaves for s in sites)
    return (
        f"{_plural(manual, 'backward')} accumulated onto the uncleared gradients of "
        f"{_plural(leaves, 'leaf tensor')} in no optimizer whose value had been updated since the previous "
        f"backward (a manual step re-applying stale gradients)"
    )


def _gl001(sites: List[BackwardSite], cwd: str) -> Tuple[str, str]:
    sites = [s for s in sites if s.kind == "backward"]
    stale = sum(s.stale_steps for s in sites)
    steps = sum(s.steps for s in sites)
    manual = _manual_stale(sites)
    if manual is not None and not stale:
        return CONFIRMED, manual
    if stale:
        params = max(s.stale_params for s in sites)
        names = sorted({n for s in sites for n in s.stale_optimizers})
        return CONFIRMED, (
            f"{_plural(stale, 'optimizer step')} ({', '.join(names)}) used gradients of "
            f"{_plural(params, 'parameter')} that still held contributions from a backward made before "
            f"that optimizer's previous step"
        )
    calls = sum(s.calls for s in sites)
    if steps >= 2:
        return REFUTED, (
            f"the backward ran {_plural(calls, 'time')}, followed by {_plural(steps, 'optimizer step')}; "
            f"every step used freshly cleared gradients"
        )
    if calls:
        return UNEXERCISED, (
            f"the backward ran {_plural(calls, 'time')} but only {_plural(steps, 'optimizer step')} "
            f"followed; at least 2 are needed to tell"
        )
    return UNEXERCISED, "this code did not run a backward"


def _gl002(sites: List[BackwardSite], cwd: str) -> Tuple[str, str]:
    retained = sum(s.retained for s in sites)
    reused = [s for s in sites if s.retained_reused]
    if reused:
        by = next((s.reused_by for s in reused if s.reused_by), None)
        return REFUTED, (
            f"a graph retained here was run again by a later backward at {where(by, cwd)}: "
            f"the retain is needed"
        )
    if retained:
        watched = sum(s.retained_watched for s in sites)
        counted = _plural(retained, "graph") + (f" ({watched} watched)" if watched < retained else "")
        return CONFIRMED, (
            f"{counted} retained here and no later backward ran any of "
            f"{'its' if retained == 1 else 'their'} nodes"
        )
    if any(s.calls for s in sites):
        return UNEXERCISED, "the backward ran but never with a retained graph"
    return UNEXERCISED, "this code did not run a backward"


def _gl003(sites: List[BackwardSite], cwd: str) -> Tuple[str, str]:
    bad = [s for s in sites if s.nonscalar]
    if bad:
        shape = next((s.nonscalar_shape for s in bad if s.nonscalar_shape is not None), None)
        count = sum(s.nonscalar for s in bad)
        numel = 1
        for size in shape or ():
            numel *= size
        return CONFIRMED, (
            f"backward ran {_plural(count, 'time')} on a tensor of shape {tuple(shape or ())} "
            f"({_plural(numel, 'element')}) without a gradient"
        )
    calls = sum(s.calls for s in sites)
    if calls:
        return REFUTED, f"the backward ran {_plural(calls, 'time')}, always on a one-element tensor"
    return UNEXERCISED, "this code did not run a backward"


_JUDGES: Dict[str, Callable[[List[BackwardSite], str], Tuple[str, str]]] = {
    "GL001": _gl001,
    "GL002": _gl002,
    "GL003": _gl003,
}


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


def _unmatched(site: BackwardSite, matched: Dict[str, set]) -> Callable[[str], bool]:
    return lambda code: id(site) not in matched.get(code, set())


def runtime_only(obs: Observations, matched: Dict[str, set], cwd: str) -> List[Finding]:
    """Problems the tracer saw at sites no static finding of that rule covers."""
    out: List[Finding] = []
    for site in obs.sites.values():
        free = _unmatched(site, matched)
        if site.stale_steps and free("GL001"):
            _, evidence = _gl001([site], cwd)
            out.append(_runtime_finding(
                "GL001", site,
                "this backward accumulates onto gradients an optimizer step already used: clear them "
                "(optimizer.zero_grad()) before the next backward",
                evidence, cwd))
        if site.retained and not site.retained_reused and free("GL002"):
            _, evidence = _gl002([site], cwd)
            out.append(_runtime_finding(
                "GL002", site,
                "`retain_graph=True` keeps a graph that no later backward uses; drop it to free the "
                "saved tensors", evidence, cwd))
        if site.nonscalar and free("GL003"):
            _, evidence = _gl003([site], cwd)
            out.append(_runtime_finding(
                "GL003", site,
                "backward on a tensor of more than one element without `gradient=`; reduce it to a "
                "scalar (e.g. .mean()) or pass the gradient", evidence, cwd))
        if site.manual_stale and not site.stale_steps and free("GL001"):
            out.append(_runtime_finding(
                "GL001", site,
                "this backward accumulates onto gradients a manual update already applied: clear them "
                "(p.grad = None) after each update", _manual_stale([site]) or "", cwd))
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
    return (f"note: {_plural(leaves, 'leaf tensor')} in no optimizer accumulated gradients across backward "
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
        judge_one = _JUDGES.get(finding.code)
        if judge_one is None:
            extra = _extra_judge(finding, obs, matched, cwd)
            out.append(finding if extra is None else extra)
            continue
        sites = index.matching(finding, cwd)
        for site in sites:
            matched.setdefault(finding.code, set()).add(id(site))
        verdict, evidence = judge_one(sites, cwd)
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

"""Runtime judges for the step-order and graph-lifetime rules (clip misuse, clears before the step,
loss history keeping graphs, losses made leaves, graphs carried across iterations).

Each judge is declared by *rule name* (rule codes are spelled only in gradlint/rules/); a rule
declaration wires it in with `judges.BY_RULE_NAME[name]`, and until then `verdicts.judge` finds it
through the rule table by name. A `RuleJudge` has two functions:

* `judge(finding, observations, cwd) -> (verdict, evidence, sites)`: the runtime verdict of one
  static finding ("confirmed" | "refuted" | "unexercised"), a sentence saying why, and the
  observed sites it was joined to (so they are not reported again as runtime-only findings).
* `runtime_only(observations, code, matched, cwd) -> [Finding]`: problems seen at sites no static
  finding of that rule was joined to (`matched`: ids of those sites), as findings with
  `static=False`.

Joins: clip and clear findings sit on the clip/clear call and join the clip/clear sites whose stack
has a frame inside the finding's lines; carried-graph findings sit on the backward and join
backward sites the same way. Loss-history and loss-made-leaf findings sit on an assignment, not on
the backward: they join the backward site nearest to it in the same file (for a leaf, the nearest
one at or after the assignment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Set, Tuple

from gradlint.paths import display_path
from gradlint.findings import RULES, Finding
from gradlint.runtime.events import BACKWARD_FAILED, INPLACE_AFTER_STEP
from gradlint.runtime.events import (CARRIED_REUSE, CLEAR_BEFORE_STEP, CLEAR_DISCARDED, CLIP_BEFORE_ASSIGNED,
                                     CLIP_CALLS, CLIP_ON_SCALED, CLIP_USED, CLIP_WASTED, FREED_GRAPH, FRESH_CLEARED,
                                     FRESH_DROPPED, FRESH_RETAINED, KEPT_AT_ONCE, KEPT_GRAPH, KEPT_UPSTREAM,
                                     KEPT_UNSTEPPED, KEPT_UPSTREAM_AT_ONCE, LEAF_DERIVED, LEAF_ROOT, PARAM_GRADS,
                                     SECOND_TIME, SECOND_TIME_AFTER_STEP, BackwardSite, Observations)

CONFIRMED, REFUTED, UNEXERCISED = "confirmed", "refuted", "unexercised"
Verdict = Tuple[str, str, List[BackwardSite]]


@dataclass(frozen=True)
class RuleJudge:
    """The runtime side of one rule."""

    rule_name: str
    judge: Callable[[Finding, Observations, str], Verdict]
    runtime_only: Callable[[Observations, str, Set[int], str], List[Finding]]


def plural(count: int, word: str) -> str:
    """`1 step`, `2 steps`: for evidence sentences."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _total(sites: List[BackwardSite], name: str) -> int:
    return sum(site.count(name) for site in sites)


def _finding_path(finding: Finding, cwd: str) -> str:
    return os.path.realpath(os.path.join(cwd, finding.path))


def _framed(finding: Finding, sites: List[BackwardSite], cwd: str,
            on_line: Callable[[int], bool]) -> List[BackwardSite]:
    """Sites with a user frame in the finding's file on a line `on_line` accepts."""
    path = _finding_path(finding, cwd)
    return [s for s in sites if any(p == path and on_line(n) for p, n in s.stack)]


def sites_in_lines(finding: Finding, sites: List[BackwardSite], cwd: str) -> List[BackwardSite]:
    """Sites with a user frame in the finding's file and within its lines."""
    end = max(finding.end_line, finding.line)
    return _framed(finding, sites, cwd, lambda n: finding.line <= n <= end)


def nearest_sites(finding: Finding, sites: List[BackwardSite], cwd: str, after: bool = False) -> List[BackwardSite]:
    """The sites whose frame in the finding's file is nearest to it (at or after it with `after`)."""
    path = _finding_path(finding, cwd)
    best: Optional[int] = None
    found: List[BackwardSite] = []
    for site in sites:
        distances = [n - finding.line for p, n in site.stack if p == path and (not after or n >= finding.line)]
        if not distances:
            continue
        distance = min(abs(d) for d in distances)
        if best is None or distance < best:
            best, found = distance, [site]
        elif distance == best:
            found.append(site)
    return found


def related_sites(finding: Finding, sites: List[BackwardSite], cwd: str) -> List[BackwardSite]:
    """Sites with a user frame on one of the lines the finding names as the calls it is about
    (`Finding.related`: the backward whose graph a store keeps, the one a leaf is run through)."""
    lines = set(finding.related)
    return _framed(finding, sites, cwd, lines.__contains__) if lines else []


def _backward_sites(obs: Observations) -> List[BackwardSite]:
    return [s for s in obs.sites.values() if s.kind == "backward"]


def _graph_sites(obs: Observations) -> List[BackwardSite]:
    """Backward and `torch.autograd.grad` sites: either may walk a graph kept past its iteration or
    carried into the next one (a loop whose gradients come from `autograd.grad`, applied by hand)."""
    return [s for s in obs.sites.values() if s.kind in ("backward", "grad")]


def _call_sites(obs: Observations, kind: str) -> List[BackwardSite]:
    return [s for s in obs.call_sites.values() if s.kind == kind]


def _new_finding(code: str, site: BackwardSite, message: str, evidence: str, cwd: str,
                 severity: Optional[str] = None) -> Finding:
    path, line = site.where
    span = site.span if site.span and site.span[0] == line else (line, 1, line, 1)
    info = RULES.get(code)
    return Finding(code=code, message=message, path=display_path(path, cwd), line=span[0], column=span[1],
                   end_line=span[2], end_column=span[3],
                   severity=severity or (info.severity if info is not None else "error"),
                   runtime=CONFIRMED, evidence=evidence, static=False)


# ------------------------------------------------------------------------------ clip misuse
def _clip_evidence(sites: List[BackwardSite]) -> Optional[str]:
    scaled, wasted = _total(sites, CLIP_ON_SCALED), _total(sites, CLIP_WASTED)
    if _total(sites, CLIP_BEFORE_ASSIGNED):
        wasted = 0  # changed after being read, maybe: a step then used gradients assigned by hand
    parts = []
    if scaled:
        parts.append(f"{plural(scaled, 'clip call')} ran on gradients still scaled by an enabled GradScaler "
                     f"(no scaler.unscale_(optimizer) before it in that step)")
    if wasted:
        parts.append(f"{plural(wasted, 'clip call')}' clipped gradients were changed or cleared before any "
                     f"optimizer step used them")
    return "; ".join(parts) or None


def judge_clip(finding: Finding, obs: Observations, cwd: str) -> Verdict:
    sites = sites_in_lines(finding, _call_sites(obs, "clip"), cwd)
    evidence = _clip_evidence(sites)
    if evidence is not None:
        return CONFIRMED, evidence, sites
    used, calls = _total(sites, CLIP_USED), _total(sites, CLIP_CALLS)
    if used:
        return REFUTED, (f"the clip ran {plural(calls, 'time')} on unscaled gradients and an optimizer step "
                         f"used the clipped gradients {plural(used, 'time')}"), sites
    if _total(sites, CLIP_BEFORE_ASSIGNED):
        return UNEXERCISED, (f"the clip ran {plural(calls, 'time')}; its gradients were replaced before the "
                             f"step, which used gradients assigned by hand (maybe summed from the clipped "
                             f"ones)"), sites
    if calls:
        return UNEXERCISED, f"the clip ran {plural(calls, 'time')} but no optimizer step followed it", sites
    return UNEXERCISED, "this clip did not run on any gradients", sites


def runtime_only_clip(obs: Observations, code: str, matched: Set[int], cwd: str) -> List[Finding]:
    out = []
    for site in _call_sites(obs, "clip"):
        if id(site) in matched:
            continue
        if site.count(CLIP_ON_SCALED):
            out.append(_new_finding(code, site, "gradients are clipped while still scaled by the GradScaler: call "
                                    "scaler.unscale_(optimizer) before clipping", _clip_evidence([site]) or "", cwd))
        elif site.count(CLIP_WASTED) >= 2 and not site.count(CLIP_USED) and not site.count(CLIP_BEFORE_ASSIGNED):
            out.append(_new_finding(code, site, "the clipped gradients never reach an optimizer step: clip after "
                                    "the backward and before optimizer.step()", _clip_evidence([site]) or "", cwd))
    return out


# ------------------------------------------------------------------------------ cleared before the step
def judge_clear_before_step(finding: Finding, obs: Observations, cwd: str) -> Verdict:
    sites = sites_in_lines(finding, _call_sites(obs, "clear"), cwd)
    before_step, dropped = _total(sites, CLEAR_BEFORE_STEP), _total(sites, CLEAR_DISCARDED)
    if before_step:
        return CONFIRMED, (f"{plural(before_step, 'optimizer step')} saw only gradients that a backward "
                           f"produced and this clear then dropped"), sites
    if dropped and obs.steps:
        return CONFIRMED, (f"this clear dropped gradients that no optimizer step had used "
                           f"{plural(dropped, 'time')}"), sites
    if not sites:
        return _judge_clear_by_hand(finding, obs, cwd)
    if obs.steps >= 2:
        return REFUTED, (f"{plural(obs.steps, 'optimizer step')} ran and this clear never dropped gradients "
                         f"a step had not used"), sites
    return UNEXERCISED, f"only {plural(obs.steps, 'optimizer step')} ran; at least 2 are needed to tell", sites


def _judge_clear_by_hand(finding: Finding, obs: Observations, cwd: str) -> Verdict:
    """A clear that called nothing the tracer wraps (`p.grad = None` / `p.grad.zero_()` per
    parameter, or one that never ran), judged from the backward nearest to it: did the steps
    after that backward find every gradient it wrote gone?"""
    backs = nearest_sites(finding, [s for s in _backward_sites(obs) if s.steps], cwd)
    lost, cleared = _total(backs, FRESH_DROPPED), _total(backs, FRESH_CLEARED)
    if lost:
        return CONFIRMED, (f"{plural(lost, 'optimizer step')} found every gradient the backward nearby had "
                           f"written cleared (None or zeroed) before the step ran"), backs
    if cleared:
        return CONFIRMED, (f"the gradients the backward nearby wrote were cleared (None or zeroed) before any "
                           f"optimizer step used them {plural(cleared, 'time')}"), backs
    steps = sum(s.steps for s in backs)
    if steps >= 2:
        return REFUTED, (f"{plural(steps, 'optimizer step')} after the backward nearby found the gradients it "
                         f"wrote still there"), backs
    return UNEXERCISED, (f"only {plural(steps, 'optimizer step')} followed the backward nearby; at least 2 are "
                         f"needed to tell"), backs


def runtime_only_clear_before_step(obs: Observations, code: str, matched: Set[int], cwd: str) -> List[Finding]:
    """Clear calls whose dropped gradients a step then missed entirely; and, for clears written by
    hand per parameter (`p.grad = None` in a step pre-hook, say), which the tracer cannot wrap and
    so cannot place, the backward whose gradients 2 or more steps found all gone."""
    out = []
    for site in _call_sites(obs, "clear"):
        if id(site) not in matched and site.count(CLEAR_BEFORE_STEP):
            out.append(_new_finding(
                code, site, "this clear drops the gradients before the optimizer step uses them: clear after "
                "the step (or before the backward)",
                f"{plural(site.count(CLEAR_BEFORE_STEP), 'optimizer step')} saw only gradients this clear had "
                f"dropped", cwd))
    for site in _backward_sites(obs):
        lost = site.count(FRESH_DROPPED)
        if id(site) not in matched and lost >= 2:
            out.append(_new_finding(
                code, site, "the gradients this backward writes are cleared by hand (set to None or zeroed) "
                "before the optimizer step uses them: clear after the step (or before the backward)",
                f"{plural(lost, 'optimizer step')} found every gradient this backward had written cleared (None "
                f"or zeroed) before the step ran", cwd))
    return out


# ------------------------------------------------------------------------------ loss history keeps graphs
def _kept_evidence(sites: List[BackwardSite], name: str = KEPT_GRAPH) -> str:
    kept = _total(sites, name)
    return (f"the graphs of {plural(kept, 'backward call')} were still alive two optimizer steps later: a value "
            f"with history (the loss or an output) is kept across iterations")


def judge_kept_graph(finding: Finding, obs: Observations, cwd: str) -> Verdict:
    # the backward the store shares its graph with; else the nearest backward, and an
    # `autograd.grad` call only where no backward in the file ran (the graph a gradient penalty's
    # `autograd.grad` walks is not the loss the store keeps)
    sites = (related_sites(finding, _graph_sites(obs), cwd) or nearest_sites(finding, _backward_sites(obs), cwd)
             or nearest_sites(finding, _graph_sites(obs), cwd))
    if _total(sites, KEPT_GRAPH):
        return CONFIRMED, _kept_evidence(sites), sites
    if _total(sites, KEPT_UPSTREAM):  # what the store keeps may be an output, not the loss itself
        return CONFIRMED, _kept_evidence(sites, KEPT_UPSTREAM), sites
    freed, calls = _total(sites, FREED_GRAPH), sum(s.calls for s in sites)
    if not obs.steps:
        # No optimizer step to tell iterations by (parameters updated by hand): the backward's own
        # calls do. Graphs freed only when the script ended say nothing, so no refutation here.
        unstepped = _total(sites, KEPT_UNSTEPPED)
        if unstepped >= 2:
            return CONFIRMED, (f"no optimizer step ran, and the graphs of {plural(unstepped, 'backward call')} "
                               f"were still alive three backward calls later: a value with history (the loss "
                               f"or an output) is kept across iterations"), sites
        return UNEXERCISED, ("no optimizer step ran and no graph was seen kept across backward calls: "
                             "iterations cannot be told apart"), sites
    if freed >= 2 and calls >= 3:
        return REFUTED, (f"the backward nearby ran {plural(calls, 'time')} and its graphs were freed each "
                         f"iteration"), sites
    return UNEXERCISED, f"the backward nearby ran {plural(calls, 'time')}; at least 3 are needed to tell", sites


def runtime_only_kept_graph(obs: Observations, code: str, matched: Set[int], cwd: str) -> List[Finding]:
    """Sites whose graphs pile up: the root's (a loss history), or nodes near it that its
    iteration made (an output or a component loss stored by a module's forward, a forward hook,
    a helper in another module). Two or more alive at the same time past their iteration: one
    kept at a time (the latest, the best so far) is not a history. Graphs kept because each
    iteration's graph reaches into the previous one's (carried state) are the carried-graph rule's."""
    out = []
    # A backward whose kept graph holds an `autograd.grad`'s (a gradient penalty made with
    # create_graph=True) explains both: the store is reported once, at the backward.
    by_backward = any(site.count(KEPT_GRAPH) or site.count(KEPT_UPSTREAM) for site in _backward_sites(obs))
    for site in _graph_sites(obs):
        if site.kind == "grad" and by_backward:
            continue
        if id(site) in matched or _carried_evidence([site]) is not None:  # state carried into the next graph: GL008's
            continue
        if site.count(KEPT_GRAPH) >= 2 and site.count(KEPT_AT_ONCE) >= 2:
            out.append(_new_finding(code, site, "graphs of this backward stay alive across iterations: store "
                                    "loss.item() or loss.detach() instead of the loss (or an output)",
                                    _kept_evidence([site]), cwd))
        elif site.count(KEPT_UPSTREAM) >= 2 and site.count(KEPT_UPSTREAM_AT_ONCE) >= 2:
            out.append(_new_finding(code, site, "parts of this backward's graph (an output or a loss term, "
                                    "kept by a list, a module's forward or a forward hook) stay alive across "
                                    "iterations: store .detach() or .item() of it instead",
                                    _kept_evidence([site], KEPT_UPSTREAM), cwd))
    return out


# ------------------------------------------------------------------------------ loss made a leaf
def _leaf_evidence(sites: List[BackwardSite]) -> str:
    calls = _total(sites, LEAF_ROOT) + _total(sites, LEAF_DERIVED)
    return (f"backward ran {plural(calls, 'time')} from a leaf tensor (itself, or values computed from it "
            f"alone): no parameter received a gradient from it")


def judge_leaf_root(finding: Finding, obs: Observations, cwd: str) -> Verdict:
    # the backward the leaf is run through; else the nearest one after the leaf is made
    sites = related_sites(finding, _backward_sites(obs), cwd) or nearest_sites(finding, _backward_sites(obs), cwd,
                                                                                after=True)
    # a call from a leaf writes no parameter, so one is enough (the leaf may be made on some
    # iterations only, `if ...: loss = torch.tensor(loss.item(), requires_grad=True)`)
    leaf = [s for s in sites if s.count(LEAF_ROOT) or s.count(LEAF_DERIVED)]
    if leaf:
        return CONFIRMED, _leaf_evidence(leaf), sites
    calls = sum(s.calls for s in sites)
    if calls:
        return REFUTED, f"the backward after it ran {plural(calls, 'time')}, never on a leaf", sites
    return UNEXERCISED, "no backward after it ran", sites


def runtime_only_leaf_root(obs: Observations, code: str, matched: Set[int], cwd: str) -> List[Finding]:
    """Sites whose every backward ran on a leaf root itself. A backward through arithmetic on a
    one-element leaf (LEAF_DERIVED) only confirms a static finding, which shows the leaf was made
    from a computed loss; from the run alone it may be a stand-alone scalar."""
    if not obs.steps:
        return []  # nothing trains: a backward on a leaf is harmless there
    return [_new_finding(code, site, "backward on a leaf tensor reaches no parameter: compute the loss from "
                         "the model's outputs instead of making it require grad", _leaf_evidence([site]), cwd)
            for site in _backward_sites(obs)
            if id(site) not in matched and site.count(LEAF_ROOT) and not site.count(PARAM_GRADS)]


# ------------------------------------------------------------------------------ graph carried across iterations
def _chained(sites: List[BackwardSite]) -> bool:
    """Did the backward re-run, after a step, graph it retained one iteration earlier, in (nearly)
    every iteration watched? Carried state links each iteration's graph to the one before, so
    all but the last graph hooked show it; a graph built once per epoch and reused by that epoch's
    steps shows it once per epoch (a graph built once before the loop never: it is not new)."""
    carried, fresh = _total(sites, CARRIED_REUSE), _total(sites, FRESH_RETAINED)
    return carried > 0 and 4 * carried >= 3 * (fresh - 1)


def _carried_evidence(sites: List[BackwardSite]) -> Optional[str]:
    raised, reused = _total(sites, SECOND_TIME_AFTER_STEP), _chained(sites)
    if raised:
        return ("this backward raised \"Trying to backward through the graph a second time\" after an optimizer "
                "step: its graph reaches into the previous iteration's")
    if reused:
        return ("this backward ran nodes of a graph it had retained before an optimizer step: state from the "
                "previous iteration carries its graph along")
    if _total(sites, SECOND_TIME):
        return "this backward raised \"Trying to backward through the graph a second time\""
    return None


def judge_carried_graph(finding: Finding, obs: Observations, cwd: str) -> Verdict:
    sites = sites_in_lines(finding, _graph_sites(obs), cwd)
    evidence = _carried_evidence(sites)
    if evidence is not None:
        return CONFIRMED, evidence, sites
    if _total(sites, INPLACE_AFTER_STEP):
        # Where the code shows carried state, this crash is it: the graph the state carries saved
        # tensors the step has since updated in place (alone, it could be another in-place write).
        return CONFIRMED, ("after an optimizer step this backward raised \"modified by an inplace operation\", "
                           "having run before: it reached tensors an earlier iteration's graph saved, which "
                           "the step updated"), sites
    if _total(sites, BACKWARD_FAILED):
        return UNEXERCISED, "the backward raised before it could tell", sites
    calls, steps = sum(s.calls for s in sites), sum(s.steps for s in sites)
    retained = [s for s in sites if s.retained]
    if _total(sites, CARRIED_REUSE):
        return UNEXERCISED, ("the backward re-ran a graph built before several of its iterations (built once "
                             "per epoch, say), not one carried from each iteration into the next"), sites
    if calls >= 2 and steps >= 1 and all(s.retained_watched for s in retained):
        return REFUTED, (f"the backward ran {plural(calls, 'time')} over {plural(steps, 'optimizer step')} and "
                         f"never reached an earlier iteration's graph"), sites
    return UNEXERCISED, f"the backward ran {plural(calls, 'time')}; a step between two calls is needed to tell", sites


def runtime_only_carried_graph(obs: Observations, code: str, matched: Set[int], cwd: str) -> List[Finding]:
    out = []
    for site in _graph_sites(obs):
        if id(site) in matched or not (site.count(SECOND_TIME_AFTER_STEP) or _chained([site])):
            continue
        out.append(_new_finding(code, site, "a value carried from the previous iteration keeps its graph: detach "
                                "it (h = h.detach(), or each tensor of a tuple such as an LSTM's (h, c)) "
                                "before the next forward", _carried_evidence([site]) or "",
                                cwd, severity="warning" if site.retained else "error"))
    return out


JUDGES: Tuple[RuleJudge, ...] = (
    RuleJudge("clip-grad-misuse", judge_clip, runtime_only_clip),
    RuleJudge("gradients-cleared-before-step", judge_clear_before_step, runtime_only_clear_before_step),
    RuleJudge("loss-history-keeps-graph", judge_kept_graph, runtime_only_kept_graph),
    RuleJudge("loss-made-leaf", judge_leaf_root, runtime_only_leaf_root),
    RuleJudge("carried-graph-state", judge_carried_graph, runtime_only_carried_graph),
)
BY_RULE_NAME: Dict[str, RuleJudge] = {j.rule_name: j for j in JUDGES}

"""The GL003 fix (issue 17): reduce the backward root with `.mean()` when it is a plain name or
attribute. After the fix the file parses, GL003 no longer fires, and the fixed scripts run."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from gradlint.analysis import AnalysisOptions
from harness import lint_options
import test_gl003
import test_gl003_batched


def _apply(text: str, fix) -> str:
    for edit in sorted(fix.edits, key=lambda e: e.start, reverse=True):
        text = text[: edit.start] + edit.text + text[edit.end :]
    return text


def _lint(tmp_path, text: str):
    path = tmp_path / "train.py"
    path.write_text(text)
    return lint_options(text, str(path), AnalysisOptions(project_root=str(tmp_path)), codes=["GL003"])


CASES = {**test_gl003.FLAGGED, **test_gl003_batched.ISSUE_FLAGGED, **test_gl003_batched.FLAGGED}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fix_reduces_every_simple_root(tmp_path, name):
    text = textwrap.dedent(CASES[name])
    findings = _lint(tmp_path, text)
    assert findings
    for finding in findings:
        if finding.fix is None:
            continue
        fixed = _apply(text, finding.fix)
        cst.parse_module(fixed)
        after = [f.line for f in _lint(tmp_path, fixed)]
        assert finding.line not in after, fixed


def test_fix_text_for_each_backward_form(tmp_path):
    text = textwrap.dedent(
        """
        import torch
        import torch.nn.functional as F

        for x, y in loader:
            loss = (model(x) - y) ** 2
            loss.backward()
            engine.backward(loss)
            scaler.scale(self_loss := loss).backward()
            torch.autograd.grad(loss, params)
        """
    )
    fixed_lines = []
    for finding in _lint(tmp_path, text):
        if finding.fix is not None:
            fixed_lines.append(_apply(text, finding.fix).splitlines()[finding.line - 1].strip())
    assert fixed_lines == [
        "loss.mean().backward()",
        "engine.backward(loss.mean())",
        "torch.autograd.grad(loss.mean(), params)",
    ]


def test_no_fix_for_a_root_that_is_not_a_name(tmp_path):
    text = textwrap.dedent(test_gl003_batched.ISSUE_FLAGGED["5_dict_return_from_forward"])
    (finding,) = _lint(tmp_path, text)
    assert finding.fix is None


RUNNABLE = {
    "per_sample_regression": """
        import torch
        from torch import nn

        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loader = [(torch.randn(8, 3), torch.randn(8, 1)) for _ in range(4)]
        for x, y in loader:
            opt.zero_grad()
            loss = (model(x) - y) ** 2
            loss.backward()
            opt.step()
    """,
    "dataparallel_gathered_loss": """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        class Classifier(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Linear(4, 3)

            def forward(self, x, y):
                return F.cross_entropy(self.body(x), y)

        net = nn.DataParallel(Classifier())
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        loader = [(torch.randn(6, 4), torch.randint(0, 3, (6,))) for _ in range(3)]
        for x, y in loader:
            opt.zero_grad()
            loss = net(x, y)
            loss.backward()
            opt.step()
    """,
    "rank_loss_module": """
        import torch
        from torch import nn

        class HingeRank(nn.Module):
            def forward(self, better, worse):
                return torch.clamp(worse - better + 1.0, min=0)

        scorer = nn.Linear(5, 1)
        rank_loss = HingeRank()
        opt = torch.optim.SGD(scorer.parameters(), lr=0.1)
        loader = [(torch.randn(4, 5), torch.randn(4, 5)) for _ in range(3)]
        for a, b in loader:
            opt.zero_grad()
            loss = rank_loss(scorer(a), scorer(b))
            loss.backward()
            opt.step()
    """,
}


@pytest.mark.parametrize("name", sorted(RUNNABLE))
def test_fixed_script_trains(tmp_path, name):
    text = textwrap.dedent(RUNNABLE[name])
    (finding,) = _lint(tmp_path, text)
    fixed = _apply(text, finding.fix)
    assert _lint(tmp_path, fixed) == []
    scope: dict = {"__name__": "fixed"}
    exec(compile(fixed, "fixed.py", "exec"), scope)  # trains without raising
    params = [p for p in scope.get("model", scope.get("net", scope.get("scorer"))).parameters()]
    assert all(p.grad is not None and bool(p.grad.isfinite().all()) for p in params)
    if name != "dataparallel_gathered_loss":  # on CPU DataParallel returns the 0-dim loss as is
        with pytest.raises(RuntimeError, match="only for scalar outputs"):
            exec(compile(text, "unfixed.py", "exec"), {"__name__": "unfixed"})

"""GL003 under `gradlint run`: a finding whose failure needs more than one GPU (a DataParallel
gather) or a batch of more than one sample is unexercised, not refuted, by a run that had neither;
it is confirmed when the run has them, and refuted only by what really disproves it."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from gradlint.cli import main
from gradlint.rules import gl003
from gradlint.runtime.events import ONE_SAMPLE_ROOT, BackwardSite, Observations

DATAPARALLEL = """\
import torch
import torch.nn as nn
import torch.nn.functional as F


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 3)

    def forward(self, x, y):
        return F.cross_entropy(self.body(x), y)


net = Classifier()
if torch.cuda.device_count() > 1:
    net = nn.DataParallel(net)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
loader = [(torch.randn(4, 8), torch.randint(0, 3, (4,))) for _ in range(3)]
for x, y in loader:
    opt.zero_grad()
    loss = net(x, y)
    loss.backward()
    opt.step()
"""

PER_SAMPLE = """\
import sys

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

model = torch.nn.Linear(6, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
data = TensorDataset(torch.randn(8, 6), torch.randn(8, 1))
loader = DataLoader(data, batch_size=int(sys.argv[1]))
for x, y in loader:
    opt.zero_grad()
    loss = F.mse_loss(model(x), y, reduction="none")
    loss.backward()
    opt.step()
"""


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_ACTIONS", "GRADLINT_OUTPUT_FORMAT", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)

    def invoke(source: str, *args: str):
        (tmp_path / "train.py").write_text(textwrap.dedent(source))
        result = CliRunner().invoke(main, ["run", "--no-cache", "--output-format", "json", "train.py", *args],
                                    catch_exceptions=False)
        (finding,) = [f for f in json.loads(result.stdout) if f["code"] == "GL003"]
        return result.exit_code, finding

    return invoke


@pytest.mark.skipif(__import__("torch").cuda.device_count() > 1, reason="this machine really gathers")
def test_dataparallel_gather_on_fewer_than_two_gpus_is_unexercised(run):
    status, finding = run(DATAPARALLEL)
    assert status == 0 and finding["static"] and finding["line"] == 23
    assert finding["runtime"] == "unexercised" and "2 or more GPUs" in finding["evidence"]


def test_batch_of_one_sample_is_unexercised(run):
    status, finding = run(PER_SAMPLE, "1")
    assert status == 0 and finding["static"] and finding["line"] == 14
    assert finding["runtime"] == "unexercised" and "a batch of one sample" in finding["evidence"]


def test_larger_batch_is_confirmed(run):
    status, finding = run(PER_SAMPLE, "4")
    assert status == 1  # the script raised torch's RuntimeError
    assert finding["static"] and finding["line"] == 14
    assert finding["runtime"] == "confirmed" and "(4, 1)" in finding["evidence"]


def _site(calls: int, one_sample: int = 0) -> BackwardSite:
    site = BackwardSite(stack=(("train.py", 3),), kind="backward", calls=calls)
    if one_sample:
        site.bump(ONE_SAMPLE_ROOT, one_sample)
    return site


def _finding(condition: str):
    from gradlint.analysis.shape_conditions import CONDITIONS
    from gradlint.findings import Finding

    message = f"`loss.backward()` starts from `loss`, which {CONDITIONS[condition]} (why)"
    return Finding("GL003", message, "train.py", 3, 1, 3, 10)


@pytest.mark.parametrize("gpus, verdict", [(0, "unexercised"), (1, "unexercised"), (2, "refuted")])
def test_gather_verdict_follows_the_gpu_count(gpus, verdict):
    assert gl003.judge([_site(3)], ".", finding=_finding("gathered"), obs=Observations(gpus=gpus))[0] == verdict


@pytest.mark.parametrize("condition", ["batched", "nonscalar"])
def test_one_element_roots_refute_only_when_0_dim(condition):
    obs = Observations()
    judge = gl003.judge
    assert judge([_site(3, one_sample=3)], ".", finding=_finding(condition), obs=obs)[0] == "unexercised"
    # one 0-dim root among them: the value was a scalar after all
    assert judge([_site(3, one_sample=2)], ".", finding=_finding(condition), obs=obs)[0] == "refuted"
    assert judge([_site(3)], ".", finding=_finding(condition), obs=obs)[0] == "refuted"
    assert judge([_site(0)], ".", finding=_finding(condition), obs=obs)[0] == "unexercised"


def test_gathered_on_two_gpus_with_one_element_roots_is_refuted_even_with_dimensions():
    verdict = gl003.judge([_site(3, one_sample=3)], ".", finding=_finding("gathered"), obs=Observations(gpus=2))
    assert verdict[0] == "refuted"


def test_gpu_count_survives_the_rank_merge():
    first, second = Observations(gpus=0), Observations(gpus=2)
    first.merge(Observations.from_json(second.to_json()))
    assert first.gpus == 2

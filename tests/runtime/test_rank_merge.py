"""Rank files of a torchrun launch: merged on rank 0, other launches' and missing ranks handled."""

from __future__ import annotations

import os

from gradlint.runtime import distributed
from gradlint.runtime.events import BackwardSite, Observations


def _observations(stale_steps: int) -> Observations:
    obs = Observations(backward_calls=3, steps=3)
    site = obs.site((("/x/train.py", 12),), "backward")
    site.calls, site.steps, site.stale_steps, site.stale_params = 3, 3, stale_steps, 2
    site.stale_optimizers.append("SGD")
    return obs


def _context(tmp_path, rank: int, world: int = 3, run_id: str = "r1"):
    env = {"RANK": str(rank), "WORLD_SIZE": str(world), "TORCHELASTIC_RUN_ID": run_id,
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", distributed.DIR_ENV: str(tmp_path)}
    return distributed.context(env)


def test_not_a_rank_without_torchrun_environment():
    assert distributed.context({}) is None
    assert distributed.context({"RANK": "0", "WORLD_SIZE": "1"}) is None


def test_rank_zero_merges_counts_and_failures(tmp_path, monkeypatch):
    monkeypatch.setenv(distributed.DIR_ENV, str(tmp_path))
    distributed.write(_context(tmp_path, 1), _observations(2), failed=False)
    distributed.write(_context(tmp_path, 2), _observations(1), failed=True)
    merged, failed, missing = distributed.gather(_context(tmp_path, 0), _observations(0), timeout=5)
    (site,) = merged.sites.values()
    assert isinstance(site, BackwardSite)
    assert (site.calls, site.stale_steps, merged.ranks) == (9, 3, 3)
    assert failed == [2] and missing == []
    assert not os.listdir(tmp_path)  # rank files removed after the merge


def test_other_launches_and_missing_ranks_are_left_out(tmp_path, monkeypatch):
    monkeypatch.setenv(distributed.DIR_ENV, str(tmp_path))
    distributed.write(_context(tmp_path, 1, run_id="older-run"), _observations(5), failed=False)
    # gives up on the missing ranks after the timeout (a hang here would be the failure)
    merged, failed, missing = distributed.gather(_context(tmp_path, 0), _observations(0), timeout=0.3)
    assert missing == [1, 2] and merged.ranks == 1
    assert sum(s.stale_steps for s in merged.sites.values()) == 0

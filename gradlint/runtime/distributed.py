"""One merged report for a distributed run launched by torchrun.

Design: launch the tracer *inside* every rank, `torchrun --nproc_per_node 2 -m gradlint run train.py`
(torchrun's `-m` runs `python -m gradlint run train.py` per rank). Each rank sees torchrun's
environment (RANK, WORLD_SIZE, ...), traces its own process, and writes its observations to a
shared folder: $GRADLINT_RUNTIME_DIR when set (use shared storage for multi-node runs), else a
folder in the temp dir named after the launch (TORCHELASTIC_RUN_ID, master address/port and the
launching agent's pid, so concurrent launches on one machine do not mix). Rank 0 waits for the
other ranks' files (up to $GRADLINT_RUNTIME_TIMEOUT seconds, default 60), merges them and reports;
the other ranks print nothing (their exit status says only whether their script failed, so a
rank's findings never make torchrun tear rank 0 down before it has written the report).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

from gradlint.atomic import write_atomic
from gradlint.runtime.events import Observations

DIR_ENV = "GRADLINT_RUNTIME_DIR"
TIMEOUT_ENV = "GRADLINT_RUNTIME_TIMEOUT"


@dataclass(frozen=True)
class RankContext:
    rank: int
    world_size: int
    folder: str
    key: str  # identifies this launch; files of other launches in the same folder are ignored
    started: float  # when this process started tracing (stale files are older)


def context(environ=None) -> Optional[RankContext]:
    """The torchrun rank this process is, or None when not launched as one of several ranks."""
    env = os.environ if environ is None else environ
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    if world <= 1 or not 0 <= rank < world:
        return None
    launch = "-".join(
        env.get(name, "") for name in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT",
                                       "TORCHELASTIC_RESTART_COUNT")
    )
    folder = env.get(DIR_ENV)
    if not folder:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{launch}-{os.getppid()}")
        folder = os.path.join(tempfile.gettempdir(), f"gradlint-run-{safe}")
    return RankContext(rank=rank, world_size=world, folder=folder, key=launch, started=time.time())


def _path(ctx: RankContext, rank: int) -> str:
    return os.path.join(ctx.folder, f"rank-{rank}.json")


def write(ctx: RankContext, obs: Observations, failed: bool) -> None:
    """Write this rank's observations atomically."""
    os.makedirs(ctx.folder, exist_ok=True)
    payload = {"key": ctx.key, "rank": ctx.rank, "failed": failed, "observations": obs.to_json()}
    target = _path(ctx, ctx.rank)
    write_atomic(target, json.dumps(payload).encode("utf-8"))


def gather(ctx: RankContext, own: Observations,
           timeout: Optional[float] = None) -> Tuple[Observations, List[int], List[int]]:
    """On rank 0: merge every rank's observations. Returns (merged, failed ranks, missing ranks)."""
    if timeout is None:
        try:
            timeout = float(os.environ.get(TIMEOUT_ENV, "60"))
        except ValueError:
            timeout = 60.0
    merged = Observations.from_json(own.to_json())
    failed: List[int] = []
    waiting = set(range(ctx.world_size)) - {ctx.rank}
    deadline = time.time() + timeout
    while waiting:
        for rank in sorted(waiting):
            data = _read(ctx, rank)
            if data is None:
                continue
            waiting.discard(rank)
            merged.merge(Observations.from_json(data["observations"]))
            if data.get("failed"):
                failed.append(rank)
        if not waiting or time.time() >= deadline:
            break
        time.sleep(0.05)
    _clean(ctx)
    return merged, sorted(failed), sorted(waiting)


def _read(ctx: RankContext, rank: int) -> Optional[dict]:
    path = _path(ctx, rank)
    try:
        if os.path.getmtime(path) < ctx.started - 30:
            return None  # left over from an earlier launch
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    if data.get("key") != ctx.key:
        return None
    return data


def _clean(ctx: RankContext) -> None:
    for rank in range(ctx.world_size):
        try:
            os.remove(_path(ctx, rank))
        except OSError:
            pass
    if not os.environ.get(DIR_ENV):
        try:
            os.rmdir(ctx.folder)
        except OSError:
            pass

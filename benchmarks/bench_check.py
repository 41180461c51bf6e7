#!/usr/bin/env python
"""Benchmark ``gradlint check`` against ruff and TorchFix (issue 5).

Not part of the test run. It measures, in one run on one machine, with the repeats of all
tools interleaved and medians reported:

* on a corpus (default: the Python sources of the installed ``torch`` package, about 2,300
  files / 1.2M lines), copied into a scratch directory so that no project configuration,
  ``.gitignore`` or default exclude (``site-packages``) changes what any tool sees:

  - gradlint cold, no cache (``--no-cache``),
  - gradlint cold, filling a fresh cache directory (a first run in CI),
  - gradlint warm (the cache filled, nothing changed),
  - ``ruff check --select F --no-cache --isolated`` (the speed yardstick),
  - TorchFix (a LibCST-based PyTorch linter, the closest peer);

* gradlint's peak memory on the corpus: the summed RSS of its whole process tree (the
  process pool's workers included), polled from ``/proc``, plus the largest single process
  (``ru_maxrss`` from ``wait4``);

* single-file latency on one small training script: ``gradlint check FILE`` (no cache and
  warm) against ``python -c "import libcst"`` (the floor any LibCST tool pays), ruff and
  TorchFix;

* whether ``gradlint check FILE`` imports torch (``python -X importtime``).

It prints a table of times and the ratios issue 5 sets targets for. Peers come from an
isolated venv made by ``benchmarks/peers.sh`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

DEFAULT_PEERS_VENV = "/tmp/gradlint-peers"
DEFAULT_WORK_DIR = os.path.join(tempfile.gettempdir(), "gradlint-bench")

# The environment every measured command runs in. PYTHONDONTWRITEBYTECODE is dropped: an installed
# gradlint (like libcst, ruff and TorchFix) has its bytecode compiled at install time, while a
# development checkout under that variable would recompile every module on every start.
BENCH_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

# Exit statuses a linter uses for "ran fine" (0: clean, 1: findings).
OK_STATUSES = (0, 1)

# A small, typical training script: the kind of file a pre-commit hook sees.
TRAINING_SCRIPT = '''\
"""A tiny regression training loop."""
import torch
from torch import nn


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))


def train(steps: int = 5) -> float:
    torch.manual_seed(0)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.MSELoss()
    inputs = torch.randn(32, 8)
    targets = torch.randn(32, 1)
    loss = torch.zeros(())
    for step in range(steps):
        optimizer.zero_grad()
        prediction = model(inputs)
        loss = loss_fn(prediction, targets)
        loss.backward()
        optimizer.step()
        if step % 2 == 0:
            print(f"step {step}: loss {loss.item():.4f}")
    return float(loss)


if __name__ == "__main__":
    train()
'''


# --------------------------------------------------------------------------------------------
# Running and measuring one command


@dataclass
class Run:
    """One timed execution of a command."""

    wall: float
    cpu: float  # user + system seconds of the process and its waited-for descendants
    max_rss_mb: float  # largest single process in the tree (ru_maxrss)
    # Peaks of the summed RSS / PSS of the live tree, when polled (PSS splits shared pages).
    tree_rss_mb: float | None
    tree_pss_mb: float | None
    status: int


def _children_map() -> dict[int, list[int]]:
    """Map each pid to its direct children, read from /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: fields follow the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _memory_bytes(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in bytes; (0, 0) if it is gone.

    RSS counts pages shared between a pool's forked workers once per worker, so its sum
    over a tree overstates; PSS splits each shared page between its sharers and sums right.
    """
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith(b"Pss:"):
                    pss = int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return rss, pss


def _tree_memory_bytes(root: int) -> tuple[int, int]:
    """Summed (RSS, PSS) of ``root`` and all its live descendants."""
    children = _children_map()
    rss_total = pss_total = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        rss, pss = _memory_bytes(pid)
        rss_total += rss
        pss_total += pss
        pending.extend(children.get(pid, ()))
    return rss_total, pss_total


class TreeMemoryPoller:
    """Polls the summed memory of a process tree in a background thread and keeps the peaks.

    A process pool's workers are separate processes whose memory ``ru_maxrss`` does not add
    up, so the peak of the whole tree can only be seen by sampling it while it runs.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            rss, pss = _tree_memory_bytes(self.pid)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_command(argv: Sequence[str], cwd: str, poll_memory: bool = False) -> Run:
    """Run ``argv`` in ``cwd`` with output discarded; time it and read its resource usage."""
    started = time.perf_counter()
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=BENCH_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stderr_chunks: list[bytes] = []
    reader = threading.Thread(
        target=lambda: stderr_chunks.append(process.stderr.read()), daemon=True
    )
    reader.start()
    poller = TreeMemoryPoller(process.pid) if poll_memory else None
    if poller is not None:
        poller.start()
    # wait4 reports this child's own rusage (its descendants included), unlike
    # RUSAGE_CHILDREN, which would mix in every earlier run.
    _, wait_status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if poller is not None:
        poller.stop()
    process.returncode = os.waitstatus_to_exitcode(wait_status)
    reader.join()
    process.stderr.close()
    if process.returncode not in OK_STATUSES:
        message = b"".join(stderr_chunks).decode(errors="replace").strip()[-2000:]
        raise RuntimeError(
            f"{' '.join(argv)} exited {process.returncode} in {cwd}:\n{message}"
        )
    return Run(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024.0,
        tree_rss_mb=poller.peak_rss / 2**20 if poller is not None else None,
        tree_pss_mb=poller.peak_pss / 2**20 if poller is not None else None,
        status=process.returncode,
    )


@dataclass
class Measurement:
    """All runs of one benchmark case."""

    label: str
    argv: list[str]
    runs: list[Run] = field(default_factory=list)
    poll_memory: bool = False  # poll the process tree's memory during the first run

    @property
    def median(self) -> float | None:
        return statistics.median(run.wall for run in self.runs) if self.runs else None

    @property
    def best(self) -> float | None:
        return min(run.wall for run in self.runs) if self.runs else None

    @property
    def cpu(self) -> float | None:
        return statistics.median(run.cpu for run in self.runs) if self.runs else None

    @property
    def max_rss_mb(self) -> float | None:
        return max(run.max_rss_mb for run in self.runs) if self.runs else None

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "argv": self.argv,
            "median_s": self.median,
            "best_s": self.best,
            "cpu_s": self.cpu,
            "max_single_rss_mb": self.max_rss_mb,
            "runs": [run.__dict__ for run in self.runs],
        }


# --------------------------------------------------------------------------------------------
# Corpus and tools


def default_corpus() -> str:
    """The directory of the installed torch package (found without importing torch)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        sys.exit("torch is not installed here: pass --corpus PATH")
    return os.path.dirname(spec.origin)


def copy_python_sources(source: str, target: str) -> tuple:
    """Copy the ``*.py`` files of ``source`` into ``target``; return (files, lines, bytes).

    Only ``.py`` files are copied so every tool sees the same files (ruff would also lint
    ``.pyi`` stubs); the copy lives outside any project, so no configuration, gitignore or
    default exclude (``site-packages``, ``.venv``) applies.
    """
    if os.path.isdir(target):
        shutil.rmtree(target)
    files = lines = size = 0
    for directory, subdirs, names in os.walk(source):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            origin = os.path.join(directory, name)
            destination = os.path.join(target, os.path.relpath(origin, source))
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            with open(origin, "rb") as handle:
                data = handle.read()
            with open(destination, "wb") as handle:
                handle.write(data)
            files += 1
            lines += data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)
            size += len(data)
    return files, lines, size


def gradlint_command() -> list[str]:
    """The gradlint console script beside this interpreter, else ``python -m gradlint``."""
    script = os.path.join(os.path.dirname(sys.executable), "gradlint")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "gradlint"]


def snapshot_gradlint(work_dir: str, revision: str) -> str | None:
    """Export gradlint's package at a git ``revision`` into the work dir; return its folder.

    A benchmark takes many minutes; in a checkout that is being edited, the code would change
    between runs (and the cache key covers gradlint's code, so a warm run would silently be
    cold). Every gradlint run therefore imports this frozen copy (through PYTHONPATH, which
    comes before an editable install's finder). None when the repository is not a git checkout.
    """
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", repo, "rev-parse", revision],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        target = os.path.join(work_dir, "snapshot", commit[:12])
        if not os.path.isdir(os.path.join(target, "gradlint")):
            os.makedirs(target, exist_ok=True)
            archive = subprocess.run(
                ["git", "-C", repo, "archive", "--format=tar", commit, "gradlint"],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return target


def peer_tool(venv: str, name: str) -> str | None:
    """Path of a peer's executable in the peers venv (or on PATH as a fallback)."""
    candidate = os.path.join(venv, "bin", name)
    if os.access(candidate, os.X_OK):
        return candidate
    return shutil.which(name)


def tool_version(argv: Sequence[str]) -> str:
    try:
        result = subprocess.run(
            list(argv),
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env=BENCH_ENV,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (
        (result.stdout or result.stderr).strip().splitlines()[0]
        if result.returncode == 0
        else "?"
    )


# --------------------------------------------------------------------------------------------
# The benchmark


def run_interleaved(
    cases: list[Measurement],
    repeat: int,
    cwd: str,
    limits: dict[str, int] | None = None,
    argv_for: dict[str, Callable[[], list[str]]] | None = None,
) -> None:
    """Run every case ``repeat`` times, round-robin so load drifts hit all cases alike.

    A case with ``poll_memory`` has its process tree's memory polled in the first round.
    ``limits`` caps the runs of a case by label (TorchFix takes minutes: it runs in the first
    round(s) only); ``argv_for`` gives a case a fresh command line per run (a new cache
    directory). Each run's time goes to stderr as progress.
    """
    limits = limits or {}
    argv_for = argv_for or {}
    for round_index in range(repeat):
        for case in cases:
            if round_index >= limits.get(case.label, repeat):
                continue
            make_argv = argv_for.get(case.label)
            poll = case.poll_memory and round_index == 0
            run = run_command(
                make_argv() if make_argv else case.argv, cwd, poll_memory=poll
            )
            case.runs.append(run)
            print(
                f"  [{round_index + 1}/{repeat}] {case.label:<34} {run.wall:8.3f} s",
                file=sys.stderr,
                flush=True,
            )


def imported_modules(argv: Sequence[str], cwd: str) -> list[tuple]:
    """Modules imported by a Python command, from ``-X importtime``: (name, cumulative us)."""
    env = dict(BENCH_ENV, PYTHONPROFILEIMPORTTIME="1")
    result = subprocess.run(
        list(argv), check=False, cwd=cwd, env=env, capture_output=True, text=True
    )
    modules = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _, cumulative, name = (
            part.strip() for part in line[len("import time:") :].split("|")
        )
        modules.append((name.strip(), int(cumulative)))
    return modules


def count_findings(report_path: str) -> dict[str, int]:
    """Findings per rule code in a ``--output-format json`` report."""
    try:
        with open(report_path, encoding="utf-8") as handle:
            findings = json.load(handle)
    except (OSError, ValueError):
        return {}
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.get("code", "?")] = counts.get(finding.get("code", "?"), 0) + 1
    return dict(sorted(counts.items()))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return numerator / denominator


def target(
    measure: str,
    numerator: Measurement | None,
    denominator: Measurement | None,
    op: str,
    limit: float,
) -> dict:
    """One row of the issue-5 target table: the ratio of two cases' median wall times (what
    the target is about) and, for a loaded machine, of their median CPU seconds; ``met``
    (judged on wall time) is None when a case did not run."""
    wall = cpu = None
    if numerator is not None and denominator is not None:
        wall = ratio(numerator.median, denominator.median)
        cpu = ratio(numerator.cpu, denominator.cpu)
    met = None
    if wall is not None:
        met = {"<=": wall <= limit, "<": wall < limit, ">=": wall >= limit}[op]
    return {
        "measure": measure,
        "measured": wall,
        "measured_cpu": cpu,
        "target": f"{op} {limit:g}x",
        "met": met,
    }


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "NO")


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


# --------------------------------------------------------------------------------------------
# Corpus (b): typical training repositories at pinned commits

# (owner/name, commit, folder in the corpus). Pinned so every run lints the same code; read from
# local mirrors (the `fetch` tool's layout or `git clone --mirror`, see benchmarks/README.md).
TRAINING_REPOS = (
    ("pytorch/examples", "77f55b912142e11fcfdf5b530231fb9c52f181e8", "examples"),
    ("karpathy/nanoGPT", "3adf61e154c3fe3fca428ad6bc3818b27a3b8291", "nanoGPT"),
    ("vwxyzjn/cleanrl", "fe8d8a03c41a7ef5b523e2e354bd01c363e786bb", "cleanrl"),
    ("eriklindernoren/PyTorch-GAN", "36d3c77e5ff20ebe0aeefd322326a134a279b93e", "PyTorch-GAN"),
    ("huggingface/accelerate", "16cb6eb80dd9aa8b4df1a63ef57863e455d53b83", "accelerate"),
)


def prepare_repos(mirrors: str, work_dir: str, target: str) -> tuple:
    """Extract each pinned repository (``git archive``, or blob by blob when the mirror lacks
    large files) and copy its ``*.py`` files to ``target/<folder>``; (files, lines, bytes)."""
    from pathlib import Path

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import realworld  # the same extraction the real-world evaluation uses

    files = lines = size = 0
    for repo, commit, folder in TRAINING_REPOS:
        git_dir = realworld.find_git_dir(Path(mirrors), repo)
        if git_dir is None or not realworld.has_commit(git_dir, commit):
            sys.exit(f"{repo}@{commit[:12]} is not in the mirrors at {mirrors}: fetch it (benchmarks/README.md)")
        tree = realworld.extract(git_dir, repo, commit, Path(work_dir) / "extract")
        f, n, b = copy_python_sources(str(tree), os.path.join(target, folder))
        files, lines, size = files + f, lines + n, size + b
    return files, lines, size


STAGE_SCRIPT = r"""
import json, os, sys
from gradlint.config import load_settings
from gradlint.discovery import discover
from gradlint.prefilter import prefilter_stage
from gradlint.source import DecodeProblem, decode_source

settings = load_settings(os.getcwd(), isolated=True)
counts = {}
def add(stage, lines):
    files, total = counts.get(stage, (0, 0))
    counts[stage] = (files + 1, total + lines)
for path in discover(sys.argv[1:], settings):
    with open(path, "rb") as handle:
        data = handle.read()
    lines = data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)
    add("all", lines)
    try:
        text, _ = decode_source(data)
    except DecodeProblem:
        add("undecodable", lines)
        continue
    local = settings.for_path(path)
    add(prefilter_stage(text, data, path, local, local.enabled_codes(path)), lines)
print(json.dumps(counts))
"""


def stage_counts(paths: list[str], cwd: str) -> dict:
    """Files and lines per prefilter stage, from gradlint's own prefilter (the code measured)."""
    result = subprocess.run(
        [sys.executable, "-c", STAGE_SCRIPT, *paths], cwd=cwd, env=BENCH_ENV, capture_output=True, text=True
    )
    if result.returncode != 0:
        print(f"stage counts failed: {result.stderr.strip()[-500:]}", file=sys.stderr)
        return {}
    return {k: tuple(v) for k, v in json.loads(result.stdout).items()}


def print_stages(counts: dict) -> None:
    """Files/lines reaching each stage of the pipeline."""
    if not counts:
        return
    files, lines = counts.get("all", (0, 0))
    no_names = counts.get("no-names", (0, 0))
    names = counts.get("names", (0, 0))
    beyond = counts.get("helpers-or-words-only", (0, 0))
    undecodable = counts.get("undecodable", (0, 0))
    rows = [
        ("read and decoded", (files - undecodable[0], lines - undecodable[1])),
        ("stage 1: names a rule's word (compiled)", (no_names[0] + names[0], no_names[1] + names[1])),
        ("stage 2: code reads a rule's name", names),
        ("admitted by an imported helper / noqa", beyond),
        ("parsed by LibCST (analysed)", (names[0] + beyond[0], names[1] + beyond[1])),
    ]
    print(f"{'stage':<44} {'files':>7} {'lines':>11}")
    print(f"{'all .py files':<44} {files:>7} {lines:>11,}")
    for label, (f, n) in rows:
        print(f"{label:<44} {f:>7} {n:>11,}")


@dataclass
class Corpus:
    """One corpus: where it lies, what each tool is given, and its measurements."""

    title: str
    root: str  # the folder every tool runs in
    paths: list[str]  # what every tool is given, relative to root
    files: int
    lines: int
    size: int
    source: str
    torchfix: bool  # run TorchFix on it
    cases: list[Measurement] = field(default_factory=list)
    findings: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)


def measure_corpus(corpus: Corpus, options, gradlint: list[str], ruff: str, torchfix: str | None,
                   caches: str, work_dir: str) -> None:
    """All cases of one corpus, interleaved; fills corpus.cases/findings/stages."""
    jobs = ["-j", options.jobs] if options.jobs else []
    extra = shlex.split(options.gradlint_args)
    base = gradlint + ["check", "--isolated", "--output-format", "concise", "--exit-zero"] + jobs + extra
    tag = corpus.title.split()[0].lower()
    warm_cache = os.path.join(caches, f"warm-{tag}")
    fresh_counter = [0]

    def fresh_cache_argv() -> list[str]:
        fresh_counter[0] += 1
        return base + ["--cache-dir", os.path.join(caches, f"fresh-{tag}{fresh_counter[0]}"), *corpus.paths]

    cold = Measurement("gradlint cold (--no-cache)", base + ["--no-cache", *corpus.paths], poll_memory=True)
    fresh = Measurement("gradlint cold (fresh cache)", base + ["--cache-dir", "<new dir per run>", *corpus.paths])
    warm = Measurement("gradlint warm (cache, unchanged)", base + ["--cache-dir", warm_cache, *corpus.paths])
    ruff_case = Measurement(
        "ruff check --select F --no-cache",
        [ruff, "check", "--select", "F", "--no-cache", "--isolated", "--quiet", "--exit-zero", *corpus.paths],
    )
    cases = [cold, warm, ruff_case] if options.no_fresh_cache else [cold, fresh, warm, ruff_case]
    if torchfix and corpus.torchfix:
        cases.append(Measurement("TorchFix", [torchfix, *corpus.paths]))
    corpus.cases = cases

    print(f"\n{corpus.title}: filling the warm cache once (not timed)", file=sys.stderr, flush=True)
    findings_file = os.path.join(work_dir, f"findings-{tag}.json")
    run_command(warm.argv[: -len(corpus.paths)] + ["--output-format", "json", "-o", findings_file, *corpus.paths],
                corpus.root)
    corpus.findings = count_findings(findings_file)
    corpus.stages = stage_counts(corpus.paths, corpus.root)
    print(f"{corpus.title}: timed runs", file=sys.stderr, flush=True)
    limits = {"TorchFix": options.torchfix_repeat}
    run_interleaved(cases, options.repeat, corpus.root, limits=limits, argv_for={fresh.label: fresh_cache_argv})


def case(corpus: Corpus, label: str) -> Measurement | None:
    return next((c for c in corpus.cases if c.label == label and c.runs), None)


def report_corpus(corpus: Corpus) -> None:
    print(f"\n## {corpus.title}: {corpus.files} files, {corpus.lines:,} lines ({corpus.source})")
    print(f"{'case':<36} {'median s':>9} {'best s':>8} {'CPU s':>7} {'max RSS MB':>11}")
    for c in corpus.cases:
        if c.runs:
            print(f"{c.label:<36} {c.median:9.3f} {c.best:8.3f} {c.cpu:7.2f} {c.max_rss_mb:11.1f}")
    found = ", ".join(f"{code} {n}" for code, n in corpus.findings.items()) or "none"
    print(f"gradlint findings: {found}")
    memory = case(corpus, "gradlint cold (--no-cache)").runs[0]
    print(f"gradlint cold, peak memory of the whole process tree (polled): RSS {memory.tree_rss_mb:.1f} MB, "
          f"PSS {memory.tree_pss_mb:.1f} MB; largest single process {memory.max_rss_mb:.1f} MB")
    print_stages(corpus.stages)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats per case (default 3)")
    parser.add_argument("--single-repeat", type=int, default=10, help="repeats of the single-file cases (default 10)")
    parser.add_argument("--corpus", help="corpus (a): this directory instead of the installed torch package")
    parser.add_argument(
        "--mirrors",
        default=os.environ.get("GRADLINT_MIRRORS"),
        help="folder of git mirrors holding the pinned training repositories, corpus (b) (env GRADLINT_MIRRORS)",
    )
    parser.add_argument("--skip-repos", action="store_true", help="leave out corpus (b), the training repositories")
    parser.add_argument("--skip-torch", action="store_true", help="leave out corpus (a), the torch sources")
    parser.add_argument("--peers-venv", default=DEFAULT_PEERS_VENV, help="venv made by peers.sh")
    parser.add_argument("--skip-torchfix", action="store_true", help="do not run TorchFix")
    parser.add_argument("--torchfix-torch", action="store_true",
                        help="also run TorchFix on corpus (a) (about 15 CPU-minutes)")
    parser.add_argument("--torchfix-repeat", type=int, default=1, help="TorchFix runs per corpus (default 1)")
    parser.add_argument("--single-file", help="training script for the latency case")
    parser.add_argument("--skip-single", action="store_true", help="leave out the single-file latency cases")
    parser.add_argument("--jobs", help="pass -j to gradlint (default: gradlint's own default)")
    parser.add_argument(
        "--snapshot",
        default="HEAD",
        help="git revision of gradlint to benchmark, exported to the work dir so edits made "
        "while it runs change nothing (default HEAD; 'none': the installed code as is)",
    )
    parser.add_argument("--no-fresh-cache", action="store_true",
                        help="leave out the 'cold, fresh cache' case (saves one cold run per repeat)")
    parser.add_argument("--gradlint-args", default="",
                        help="extra options for every gradlint run, e.g. '--select GL002' (one string)")
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR, help="scratch directory")
    parser.add_argument("--json", dest="json_out", help="also write all results as JSON here")
    options = parser.parse_args(argv)

    gradlint = gradlint_command()
    snapshot = None
    if options.snapshot != "none":
        snapshot = snapshot_gradlint(options.work_dir, options.snapshot)
        if snapshot is not None:
            BENCH_ENV["PYTHONPATH"] = os.pathsep.join([snapshot] + [p for p in [BENCH_ENV.get("PYTHONPATH")] if p])
    ruff = peer_tool(options.peers_venv, "ruff")
    torchfix = None if options.skip_torchfix else peer_tool(options.peers_venv, "torchfix")
    if ruff is None:
        sys.exit("ruff not found: run benchmarks/peers.sh or pass --peers-venv")
    if not options.skip_torchfix and torchfix is None:
        sys.exit("torchfix not found: run benchmarks/peers.sh, or pass --skip-torchfix")
    if not options.skip_repos and not options.mirrors:
        sys.exit("corpus (b) needs --mirrors DIR (or GRADLINT_MIRRORS), or pass --skip-repos")

    os.makedirs(options.work_dir, exist_ok=True)
    corpora: list[Corpus] = []
    if not options.skip_torch:
        # Every tool runs in the folder holding the copy and is given its name, as when a repository
        # is linted from its root: `import torch.x` inside the corpus then resolves to the corpus
        # (gradlint reads the project modules a file imports, for cross-module helpers).
        source = os.path.abspath(options.corpus or default_corpus())
        root = os.path.join(options.work_dir, "corpus")
        name = os.path.basename(source.rstrip(os.sep))
        files, lines, size = copy_python_sources(source, os.path.join(root, name))
        if files == 0:
            sys.exit(f"no .py files under {source}")
        corpora.append(Corpus("(a) torch sources" if not options.corpus else "(a) corpus", root, [name],
                              files, lines, size, source, options.torchfix_torch))
    if not options.skip_repos:
        root = os.path.join(options.work_dir, "repos")
        if os.path.isdir(root):
            shutil.rmtree(root)
        files, lines, size = prepare_repos(options.mirrors, options.work_dir, root)
        corpora.append(Corpus("(b) training repositories", root, [f for _, _, f in TRAINING_REPOS], files, lines,
                              size, ", ".join(f"{r}@{c[:8]}" for r, c, _ in TRAINING_REPOS), True))

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for corpus in corpora:
        print(f"corpus   {corpus.title}: {corpus.source}")
        print(f"         {corpus.files} .py files, {corpus.lines:,} lines, {corpus.size / 2**20:.1f} MiB "
              f"(copied to {corpus.root})")
    print(f"machine  {cpus} CPUs, {platform.python_implementation()} {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print(f"gradlint {tool_version(gradlint + ['--version'])} ({' '.join(gradlint)})")
    if snapshot:
        print(f"         code: git {os.path.basename(snapshot)}, frozen in {snapshot}")
    print(f"ruff     {tool_version([ruff, '--version'])} ({ruff})")
    if torchfix:
        print(f"torchfix {tool_version([torchfix, '--version'])} ({torchfix})")
    print(f"repeats  {options.repeat} (TorchFix: {options.torchfix_repeat}), medians shown", flush=True)

    caches = os.path.join(options.work_dir, "caches")
    shutil.rmtree(caches, ignore_errors=True)
    os.makedirs(caches)
    for corpus in corpora:
        measure_corpus(corpus, options, gradlint, ruff, torchfix, caches, options.work_dir)

    single_cases: list[Measurement] = []
    imports_torch = None
    if not options.skip_single:
        single_cases, imports_torch, single_lines, heaviest, module_count = measure_single(
            options, gradlint, ruff, torchfix, caches)

    # ----- report
    for corpus in corpora:
        report_corpus(corpus)
    if single_cases:
        print(f"\n## Single file ({single_lines} lines), {options.single_repeat} repeats")
        print(f"{'case':<36} {'median s':>9} {'best s':>8}")
        for c in single_cases:
            print(f"{c.label:<36} {c.median:9.3f} {c.best:8.3f}")
        print(f"gradlint check FILE imports torch: {'YES' if imports_torch else 'no'} "
              f"({module_count} modules imported; heaviest: {heaviest})")

    targets = []
    memory_rows = []
    for corpus in corpora:
        short = corpus.title.split(" ", 1)[0]
        cold = case(corpus, "gradlint cold (--no-cache)")
        ruff_case = case(corpus, "ruff check --select F --no-cache")
        targets.append(target(f"{short} gradlint cold / ruff", cold, ruff_case, "<=", 10))
        targets.append(target(f"{short} gradlint cold (fresh cache) / ruff",
                              case(corpus, "gradlint cold (fresh cache)"), ruff_case, "<=", 10))
        targets.append(target(f"{short} gradlint warm / ruff", case(corpus, "gradlint warm (cache, unchanged)"),
                              ruff_case, "<=", 0.5))
        if case(corpus, "TorchFix"):
            targets.append(target(f"{short} TorchFix / gradlint cold", case(corpus, "TorchFix"), cold, ">=", 1))
        memory = cold.runs[0] if cold else None
        if memory is not None:
            memory_rows.append((short, memory.tree_rss_mb or 0.0, memory.tree_pss_mb or 0.0))
    if single_cases:
        targets.append(target("single file: gradlint / import libcst", single_cases[1], single_cases[0], "<=", 1.5))
        targets.append(target("single file warm: gradlint / import libcst", single_cases[2], single_cases[0],
                              "<=", 1.5))
    print("\n## Targets (issue 16): ratios of median wall times (and of CPU seconds)")
    print(f"{'measure':<44} {'wall':>8} {'(CPU)':>8} {'target':>9}  met")
    for row in targets:
        print(f"{row['measure']:<44} {fmt_ratio(row['measured']):>8} "
              f"{fmt_ratio(row['measured_cpu']):>8} {row['target']:>9}  {verdict(row['met'])}")
    for short, rss, pss in memory_rows:
        print(f"{short + ' gradlint peak memory (tree, RSS)':<44} {f'{rss:.0f} MB':>8} "
              f"{f'PSS {pss:.0f}':>8} {'<= 400 MB':>9}  {verdict(rss <= 400)}")
    if imports_torch is not None:
        print(f"{'gradlint check FILE imports torch':<44} {'yes' if imports_torch else 'no':>8} {'':>8} "
              f"{'no':>9}  {verdict(not imports_torch)}")

    if options.json_out:
        report = {
            "cpus": cpus,
            "python": platform.python_version(),
            "corpora": [
                {"title": c.title, "source": c.source, "files": c.files, "lines": c.lines, "bytes": c.size,
                 "gradlint_findings": c.findings, "stages": c.stages, "cases": [m.to_json() for m in c.cases]}
                for c in corpora
            ],
            "single_file": [m.to_json() for m in single_cases],
            "imports_torch": imports_torch,
            "targets": targets,
        }
        with open(options.json_out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return 0


def measure_single(options, gradlint: list[str], ruff: str, torchfix: str | None, caches: str):
    """Single-file latency: gradlint (no cache, warm) against `import libcst`, ruff, TorchFix;
    and whether `gradlint check FILE` imports torch."""
    extra = shlex.split(options.gradlint_args)
    single_dir = os.path.join(options.work_dir, "single")
    os.makedirs(single_dir, exist_ok=True)
    single = os.path.join(single_dir, "train.py")
    if options.single_file:
        shutil.copyfile(options.single_file, single)
    else:
        with open(single, "w", encoding="utf-8") as handle:
            handle.write(TRAINING_SCRIPT)
    single_base = gradlint + ["check", "--isolated", "--output-format", "concise", "--exit-zero", *extra]
    single_cache = os.path.join(caches, "single")
    cases = [
        Measurement("python -c 'import libcst'", [sys.executable, "-c", "import libcst"]),
        Measurement("gradlint check FILE --no-cache", single_base + ["--no-cache", single]),
        Measurement("gradlint check FILE (warm cache)", single_base + ["--cache-dir", single_cache, single]),
        Measurement("ruff check --select F FILE",
                    [ruff, "check", "--select", "F", "--no-cache", "--isolated", "--quiet", "--exit-zero", single]),
    ]
    if torchfix:
        cases.append(Measurement("TorchFix FILE", [torchfix, single]))
    run_command(cases[2].argv, single_dir)  # fill the single-file cache
    print("single-file runs:", file=sys.stderr, flush=True)
    run_interleaved(cases, options.single_repeat, single_dir)
    importtime_argv = [sys.executable, "-X", "importtime"]
    importtime_argv += gradlint[1:] if gradlint[0] == sys.executable else gradlint
    modules = imported_modules(importtime_argv + ["check", "--isolated", "--no-cache", single], single_dir)
    names = {name for name, _ in modules}
    imports_torch = "torch" in names or any(n.startswith("torch.") for n in names)
    top = sorted(((n, us) for n, us in modules if "." not in n), key=lambda item: -item[1])[:6]
    heaviest = ", ".join(f"{n} {us / 1000:.0f} ms" for n, us in top)
    with open(single, encoding="utf-8") as handle:
        lines = handle.read().count("\n")
    return cases, imports_torch, lines, heaviest, len(modules)


if __name__ == "__main__":
    sys.exit(main())

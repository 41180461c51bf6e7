"""Sweep big trees with gradlint and report what must never happen: internal errors, exit codes
other than 0/1, signals, unbounded memory, and the slowest file.

    python benchmarks/bench_hostile.py TREE [TREE ...] [--jobs N] [--timeout S] [--json OUT]

For each tree (a folder: an installed package such as torch's site-packages folder, or a public
repository extracted with `git --git-dir=DIR archive HEAD | tar -x -C DEST`):

1. `gradlint check --no-cache -j N TREE` as users run it: exit status, wall time, internal-error
   lines on stderr, and the peak resident memory summed over gradlint's process tree (the parent
   and its pool workers; sampled from /proc every 0.1 s, so Linux only; elsewhere 0).
2. Every file linted one by one in a child process (`gradlint.engine.lint_bytes`, the path the
   CLI takes for a file): the slowest files, GL000 counts by reason, and any exception.

Nothing is written into the trees; the cache is off. The report goes to stdout (and `--json`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

_PER_FILE = r"""
import json, os, sys, time, traceback
from gradlint.config import load_settings
from gradlint.discovery import discover
from gradlint.engine import lint_bytes
tree = sys.argv[1]
settings = load_settings(tree, isolated=True)
files = discover([tree], settings)
times, errors, gl000 = [], [], {}
for path in files:
    with open(path, "rb") as handle:
        data = handle.read()
    start = time.perf_counter()
    try:
        findings = lint_bytes(data, path, settings)
    except Exception as err:
        errors.append(f"{path}: {type(err).__name__}: {err}")
        findings = []
    times.append((time.perf_counter() - start, path, len(data)))
    for f in findings:
        if f.code == "GL000":
            reason = f.message.split(":")[0]
            gl000[reason] = gl000.get(reason, 0) + 1
times.sort(reverse=True)
json.dump({"files": len(files), "errors": errors, "gl000": gl000,
           "slowest": [[round(t, 2), p, n] for t, p, n in times[:5]]}, sys.stdout)
"""


def _tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants (Linux /proc), 0 elsewhere."""
    children: Dict[int, List[int]] = {}
    rss: Dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    try:
        names = os.listdir("/proc")
    except OSError:
        return 0
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            pid = int(name)
            children.setdefault(int(fields[1]), []).append(pid)
            rss[pid] = int(fields[21]) * page
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def _measured(command: List[str], timeout: float, env: Optional[dict] = None) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = 0
    out: List[bytes] = []
    err: List[bytes] = []
    import threading

    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()))
               for s, b in ((proc.stdout, out), (proc.stderr, err))]
    for reader in readers:
        reader.start()
    timed_out = False
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        if time.perf_counter() - start > timeout:
            proc.kill()
            timed_out = True
            break
        time.sleep(0.1)
    proc.wait()
    for reader in readers:
        reader.join()
    return {"rc": proc.returncode, "seconds": round(time.perf_counter() - start, 1), "peak_mb": peak // 2**20,
            "timed_out": timed_out, "stdout": b"".join(out), "stderr": b"".join(err)}


def sweep(tree: str, jobs: int, timeout: float, per_file: bool) -> dict:
    env = dict(os.environ)
    env.pop("GRADLINT_DEBUG", None)
    cli = _measured([sys.executable, "-m", "gradlint", "check", "--no-cache", "-q",
                     "-j", str(jobs), "--output-format", "json", tree], timeout, env)
    stderr = cli.pop("stderr").decode("utf-8", "replace")
    stdout = cli.pop("stdout")
    try:
        findings = json.loads(stdout or b"[]")
    except ValueError:
        findings = []
    report = {"tree": tree, "cli": cli,
              "internal_errors": [line for line in stderr.splitlines() if "internal error" in line],
              "findings": {}}
    for finding in findings if isinstance(findings, list) else []:
        code = finding.get("code", "?")
        report["findings"][code] = report["findings"].get(code, 0) + 1
    if per_file:
        one = _measured([sys.executable, "-c", _PER_FILE, tree], timeout, env)
        try:
            report["per_file"] = json.loads(one["stdout"] or b"{}")
        except ValueError:
            report["per_file"] = {"crashed": one["rc"], "stderr": one["stderr"].decode("utf-8", "replace")[-2000:]}
        report["per_file_peak_mb"] = one["peak_mb"]
        report["per_file_seconds"] = one["seconds"]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--jobs", type=int, default=0, help="gradlint -j (default 0: all cores)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per gradlint process")
    parser.add_argument("--no-per-file", action="store_true", help="skip the one-file-at-a-time pass")
    parser.add_argument("--json", default=None, help="also write the full report here")
    args = parser.parse_args()
    reports = [sweep(tree, args.jobs, args.timeout, not args.no_per_file) for tree in args.trees]
    bad = 0
    for report in reports:
        cli = report["cli"]
        print(f"{report['tree']}: exit {cli['rc']}{' (TIMED OUT)' if cli['timed_out'] else ''}, "
              f"{cli['seconds']} s, peak {cli['peak_mb']} MB (process tree), "
              f"{len(report['internal_errors'])} internal errors, findings {report['findings']}")
        for line in report["internal_errors"][:10]:
            print(f"    {line}")
        per = report.get("per_file")
        if per and "slowest" in per:
            print(f"    one by one: {per['files']} files, {report['per_file_seconds']} s, "
                  f"peak {report['per_file_peak_mb']} MB, {len(per['errors'])} exceptions, GL000 {per['gl000']}")
            for seconds, path, size in per["slowest"]:
                print(f"    slow: {seconds} s  {size:,} bytes  {path}")
        elif per:
            print(f"    one by one: CRASHED {per}")
        bad += cli["rc"] not in (0, 1) or bool(report["internal_errors"]) or cli["timed_out"]
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(reports, handle, indent=2)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

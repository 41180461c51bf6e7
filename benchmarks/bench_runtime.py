"""Overhead of gradlint's runtime tracer on an MLP training loop, measured in one run.

MLP 128-256-256-10, Adam, batch 64, 2,000 steps, one thread; untraced and traced runs interleaved
(repeats alternate which goes first), medians reported, with and without `retain_graph=True` on
every backward. Also checks the final parameters are bitwise identical traced and untraced.

`--process` measures whole processes instead, as a user sees them: the same loop written to a
script in a temporary directory, `python SCRIPT` against `gradlint run SCRIPT` (interpreter start,
torch import, gradlint's static pass over the script and its report included) as a first run (an
empty result cache) and as a rerun of the unchanged script (cache filled), interleaved, median wall
time of `--repeats` runs each.

    python benchmarks/bench_runtime.py [--steps 2000] [--repeats 5] [--json] [--process]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def build(torch):
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randn(64, 128, generator=generator) for _ in range(16)]
    labels = [torch.randint(0, 10, (64,), generator=generator) for _ in range(16)]
    return model, optimizer, inputs, labels


def train(torch, steps: int, retain: bool):
    """One timed training run; returns ((wall s, cpu s), final parameters)."""
    model, optimizer, inputs, labels = build(torch)
    loss_fn = torch.nn.functional.cross_entropy
    start, start_cpu = time.perf_counter(), time.process_time()
    for step in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(inputs[step % 16]), labels[step % 16])
        loss.backward(retain_graph=retain)
        optimizer.step()
    elapsed = (time.perf_counter() - start, time.process_time() - start_cpu)
    return elapsed, [p.detach().clone() for p in model.parameters()]


WATCH_EVERY_GRAPH = False  # --watch-every-graph: hook every retained graph (no sampling)


def traced_train(torch, steps: int, retain: bool):
    from gradlint.runtime.tracer import Tracer

    tracer = Tracer()
    if WATCH_EVERY_GRAPH:
        tracer.watch_all_retained = float("inf")
    tracer.start()
    try:
        return train(torch, steps, retain)
    finally:
        obs = tracer.stop()
        assert obs.steps == steps and obs.internal_errors == 0, obs.first_error


def measure(torch, steps: int, repeats: int, retain: bool) -> dict:
    plain, traced = [], []
    identical = True
    train(torch, 50, retain)  # warm-up (allocator, kernels)
    traced_train(torch, 50, retain)
    for repeat in range(repeats):
        order = [(plain, train), (traced, traced_train)]
        if repeat % 2:
            order.reverse()
        results = {}
        for bucket, run in order:
            seconds, params = run(torch, steps, retain)
            bucket.append(seconds)
            results[run is traced_train] = params
        identical = identical and all(torch.equal(a, b) for a, b in zip(results[False], results[True]))
    row = {"retain_graph": retain, "steps": steps, "repeats": repeats, "bitwise_identical": identical}
    for index, clock in enumerate(("wall", "cpu")):
        base = statistics.median(t[index] for t in plain)
        with_tracer = statistics.median(t[index] for t in traced)
        row[f"{clock}_untraced_s"] = round(base, 4)
        row[f"{clock}_traced_s"] = round(with_tracer, 4)
        row[f"{clock}_ratio"] = round(with_tracer / base, 3)
        row[f"{clock}_overhead_us_per_step"] = round((with_tracer - base) / steps * 1e6, 1)
    return row


SCRIPT = """\
import sys
import torch
from torch import nn

torch.set_num_threads(1)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
generator = torch.Generator().manual_seed(1)
inputs = [torch.randn(64, 128, generator=generator) for _ in range(16)]
labels = [torch.randint(0, 10, (64,), generator=generator) for _ in range(16)]
steps, retain = int(sys.argv[1]), sys.argv[2] == "retain"
for step in range(steps):
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(inputs[step % 16]), labels[step % 16])
    loss.backward(retain_graph=retain)
    optimizer.step()
"""


def measure_processes(steps: int, repeats: int, retain: bool) -> dict:
    """Median wall seconds of `python SCRIPT` and `gradlint run SCRIPT`, run alternately."""
    argv = [str(steps), "retain" if retain else "plain"]
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "train_mlp.py")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(SCRIPT)
        traced = [sys.executable, "-m", "gradlint", "run", "--exit-zero"]
        commands = {
            "plain": [sys.executable, script, *argv],
            # a first run: an empty result cache each time, so the static pass really runs
            "first": [*traced, "--cache-dir", os.path.join(folder, "cache-{repeat}"), script, *argv],
            # a rerun of an unchanged script: the static findings come from the cache
            "rerun": [*traced, "--cache-dir", os.path.join(folder, "cache"), script, *argv],
        }
        # PYTHONDONTWRITEBYTECODE is dropped as bench_check.py does: an installed gradlint has its
        # bytecode compiled at install time, a checkout under that variable would recompile every
        # gradlint module on every start and charge that to the tracer
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        times: dict = {name: [] for name in commands}
        for repeat in range(repeats + 1):  # the first round warms the page cache and is dropped
            names = list(commands)
            names = names[repeat % len(names):] + names[:repeat % len(names)]
            for name in names:
                command = [part.replace("{repeat}", str(repeat)) for part in commands[name]]
                start = time.perf_counter()
                done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
                elapsed = time.perf_counter() - start
                if done.returncode != 0:
                    raise SystemExit(f"{name} run failed ({done.returncode}):\n{done.stdout}{done.stderr}")
                if repeat:
                    times[name].append(elapsed)
    plain, first, rerun = (statistics.median(times[name]) for name in ("plain", "first", "rerun"))
    return {"retain_graph": retain, "steps": steps, "repeats": repeats, "process_plain_s": round(plain, 3),
            "process_first_s": round(first, 3), "process_first_ratio": round(first / plain, 3),
            "process_rerun_s": round(rerun, 3), "process_rerun_ratio": round(rerun / plain, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--watch-every-graph", action="store_true",
                        help="hook every retained graph (by default, after 64 never-reused graphs at a "
                             "call site the tracer watches a 1-in-8 sample)")
    parser.add_argument("--process", action="store_true",
                        help="time whole processes: `python SCRIPT` against `gradlint run SCRIPT`")
    args = parser.parse_args()
    if args.process:
        rows = [measure_processes(args.steps, args.repeats, retain) for retain in (False, True)]
        if args.json:
            print(json.dumps(rows, indent=2))
            return
        print(f"whole processes, MLP 128-256-256-10, Adam, batch 64, {args.steps} steps, "
              f"median wall of {args.repeats}")
        for row in rows:
            label = "retain_graph=True " if row["retain_graph"] else "retain_graph=False"
            print(f"{label}: python {row['process_plain_s']:.3f} s; gradlint run, first run "
                  f"{row['process_first_s']:.3f} s ({row['process_first_ratio']:.3f}x), rerun "
                  f"{row['process_rerun_s']:.3f} s ({row['process_rerun_ratio']:.3f}x)")
        return
    global WATCH_EVERY_GRAPH
    WATCH_EVERY_GRAPH = args.watch_every_graph

    import torch

    torch.set_num_threads(1)
    rows = [measure(torch, args.steps, args.repeats, retain) for retain in (False, True)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"torch {torch.__version__}, 1 thread, MLP 128-256-256-10, Adam, batch 64, "
          f"{args.steps} steps, median of {args.repeats}"
          + (", every retained graph watched" if WATCH_EVERY_GRAPH else ""))
    for row in rows:
        label = "retain_graph=True " if row["retain_graph"] else "retain_graph=False"
        for clock in ("wall", "cpu"):
            print(f"{label} {clock:>4}: untraced {row[clock + '_untraced_s']:.3f} s, "
                  f"traced {row[clock + '_traced_s']:.3f} s, ratio {row[clock + '_ratio']:.3f}x "
                  f"({row[clock + '_overhead_us_per_step']:+.1f} us/step)")
        print(f"{label}: final parameters bitwise identical traced/untraced: {row['bitwise_identical']}")


if __name__ == "__main__":
    main()

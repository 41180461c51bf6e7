"""Overhead of gradlint's runtime tracer on an MLP training loop, measured in one run.

MLP 128-256-256-10, Adam, batch 64, 2,000 steps, one thread; untraced and traced runs interleaved
(repeats alternate which goes first), medians reported, with and without `retain_graph=True` on
every backward. Also checks the final parameters are bitwise identical traced and untraced.

    python benchmarks/bench_runtime.py [--steps 2000] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--watch-every-graph", action="store_true",
                        help="hook every retained graph (by default, after 64 never-reused graphs at a "
                             "call site the tracer watches a 1-in-8 sample)")
    args = parser.parse_args()
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

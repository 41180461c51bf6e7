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
    """One timed training run; returns (seconds, final parameters)."""
    model, optimizer, inputs, labels = build(torch)
    loss_fn = torch.nn.functional.cross_entropy
    start = time.perf_counter()
    for step in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(inputs[step % 16]), labels[step % 16])
        loss.backward(retain_graph=retain)
        optimizer.step()
    elapsed = time.perf_counter() - start
    return elapsed, [p.detach().clone() for p in model.parameters()]


def traced_train(torch, steps: int, retain: bool):
    from gradlint.runtime.tracer import Tracer

    tracer = Tracer().start()
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
    base, with_tracer = statistics.median(plain), statistics.median(traced)
    return {
        "retain_graph": retain,
        "steps": steps,
        "repeats": repeats,
        "untraced_s": round(base, 4),
        "traced_s": round(with_tracer, 4),
        "ratio": round(with_tracer / base, 3),
        "per_step_overhead_us": round((with_tracer - base) / steps * 1e6, 1),
        "bitwise_identical": identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    rows = [measure(torch, args.steps, args.repeats, retain) for retain in (False, True)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"torch {torch.__version__}, 1 thread, MLP 128-256-256-10, Adam, batch 64, "
          f"{args.steps} steps, median of {args.repeats}")
    for row in rows:
        label = "retain_graph=True " if row["retain_graph"] else "retain_graph=False"
        print(f"{label}: untraced {row['untraced_s']:.3f} s, traced {row['traced_s']:.3f} s, "
              f"ratio {row['ratio']:.3f}x ({row['per_step_overhead_us']:+.1f} us/step), "
              f"bitwise identical: {row['bitwise_identical']}")


if __name__ == "__main__":
    main()

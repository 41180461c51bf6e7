"""4 threads each train their own model, 10 traced rounds in one process; prints one line per round.

`--stale N`: thread N never clears its gradients (GL001)."""
import sys
import threading

import torch

import gradlint.runtime

STALE = int(sys.argv[sys.argv.index("--stale") + 1]) if "--stale" in sys.argv else -1
STEPS = 25


def train(index):
    torch.manual_seed(index)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(STEPS):
        if index != STALE:
            optimizer.zero_grad(set_to_none=step % 2 == 0)
        loss = model(torch.randn(4, 8)).pow(2).mean()
        loss.backward()
        optimizer.step()
        if index != STALE and step % 3 == 0:
            for p in model.parameters():
                p.grad = None


for round_ in range(10):
    with gradlint.runtime.trace() as traced:
        threads = [threading.Thread(target=train, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    obs = traced.observations
    stale = sorted({o.stale_steps for o in obs.optimizers})
    confirmed = sorted(f.code for f in traced.confirmed())
    print(f"round={round_} backward={obs.backward_calls} steps={obs.steps} threads={obs.threads} "
          f"errors={obs.internal_errors} optimizers={len(obs.optimizers)} stale={stale} confirmed={confirmed}",
          flush=True)

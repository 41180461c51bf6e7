"""A loop in the script calling a project helper that runs backward and step without any clear."""
import sys

import torch

from gl_pkg.loop_steps import run_epoch, train_step

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
if "--epoch" in sys.argv:
    run_epoch(model, optimizer, [torch.randn(8, 4) for _ in range(4)])
else:
    for _ in range(4):
        train_step(model, optimizer, torch.randn(8, 4))

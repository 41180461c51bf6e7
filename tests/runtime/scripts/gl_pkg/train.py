"""Run with `gradlint run -m gl_pkg.train`: the backward runs in a project helper."""
import sys

import torch

from gl_pkg.steps import backward_and_step

print(f"main={__name__} argv={sys.argv[1:]}")
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):
    optimizer.zero_grad()
    backward_and_step(model(torch.randn(8, 4)).pow(2).mean(), optimizer)

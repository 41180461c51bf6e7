"""Older idioms: clearing through .data, and an LBFGS closure, each with a switch for the bug."""
import sys

import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
inputs, targets = torch.randn(16, 4), torch.randn(16, 1)

if "--lbfgs" in sys.argv:
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=3)

    def closure():
        if "--forget" not in sys.argv:
            optimizer.zero_grad()
        loss = (model(inputs) - targets).pow(2).mean()
        loss.backward()
        return loss

    for _ in range(3):
        optimizer.step(closure)
else:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(4):
        loss = (model(inputs) - targets).pow(2).mean()
        loss.backward()
        optimizer.step()
        if "--forget" not in sys.argv:
            for p in model.parameters():
                p.grad.data.zero_()

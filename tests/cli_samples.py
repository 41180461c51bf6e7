"""Training loops the CLI/engine tests lint (kept apart from the rule tests: only the most
obvious GL001 case is relied on here)."""

# A training loop every reviewer agrees is GL001: backward and step each iteration, never cleared.
LOOP_WITHOUT_ZERO_GRAD = """\
import torch

model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in data:
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
"""

CLEAN_LOOP = """\
import torch

model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in data:
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
"""

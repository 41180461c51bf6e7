"""GL003 (good): the least-squares fit with the squared residual summed over every element."""
import torch

torch.manual_seed(0)
features = torch.randn(16, 4)
targets = torch.randn(16, 3)
weight = torch.zeros(4, 3, requires_grad=True)
optimizer = torch.optim.SGD([weight], lr=0.1)

for _ in range(3):
    residual = features @ weight - targets
    loss = residual.pow(2).sum(dim=1).mean() * 0.5
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

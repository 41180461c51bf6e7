"""GL003 (bad): a least-squares fit that reduces over one dimension only.

`residual` has shape (16, 3); `.pow(2).sum(dim=1)` leaves one value per row, so the loss is a
vector of 16. The RuntimeError torch raises is caught so the script runs all its steps.
"""
import torch

torch.manual_seed(0)
features = torch.randn(16, 4)
targets = torch.randn(16, 3)
weight = torch.zeros(4, 3, requires_grad=True)
optimizer = torch.optim.SGD([weight], lr=0.1)

for _ in range(3):
    residual = features @ weight - targets
    loss = residual.pow(2).sum(dim=1)
    optimizer.zero_grad()
    try:
        loss.backward()
    except RuntimeError as error:
        print(f"backward failed: {error}")
    optimizer.step()

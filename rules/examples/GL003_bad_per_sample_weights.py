"""GL003 (bad): per-sample losses weighted by a mean, where the mean binds tighter than it looks.

`per_sample * weights.mean()` scales every sample's loss by one number; it is still a vector of
eight losses. The RuntimeError torch raises is caught so the script runs all its steps.
"""
import torch
import torch.nn.functional as F

torch.manual_seed(0)
model = torch.nn.Linear(5, 3)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

for _ in range(3):
    inputs = torch.randn(8, 5)
    labels = torch.randint(0, 3, (8,))
    weights = torch.rand(8)
    per_sample = F.cross_entropy(model(inputs), labels, reduction="none")
    loss = per_sample * weights.mean()
    optimizer.zero_grad()
    try:
        loss.backward()
    except RuntimeError as error:
        print(f"backward failed: {error}")
    optimizer.step()

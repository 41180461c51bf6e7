"""GL003 (good): per-sample losses, weighted, then reduced to one number before backward."""
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
    loss = (per_sample * weights).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

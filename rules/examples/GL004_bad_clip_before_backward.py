"""GL004 (bad): the clip runs before the backward of the same iteration.

At that point the gradients hold what the last clear left (zeros here); the backward that follows
writes the gradients the step uses, and they are never clipped.
"""
import torch
from torch import nn

torch.manual_seed(0)
model = nn.GRU(4, 8, batch_first=True)
head = nn.Linear(8, 1)
params = list(model.parameters()) + list(head.parameters())
optimizer = torch.optim.Adam(params, lr=1e-3)
data = [(torch.randn(2, 5, 4), torch.randn(2, 1)) for _ in range(3)]

for sequences, targets in data:
    outputs, _ = model(sequences)
    loss = nn.functional.mse_loss(head(outputs[:, -1]), targets)
    nn.utils.clip_grad_norm_(params, 1.0)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)

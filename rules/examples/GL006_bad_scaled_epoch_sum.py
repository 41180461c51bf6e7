"""GL006 (bad): the epoch's loss is summed from copies of the loss scaled by the batch size.

`loss * inputs.size(0)` is a new tensor whose history includes the whole batch's graph; summing
these keeps every batch's graph alive until the epoch ends.
"""
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(10, 3)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
criterion = nn.CrossEntropyLoss()
batches = [(torch.randn(16, 10), torch.randint(0, 3, (16,))) for _ in range(5)]

epoch_loss = 0.0
for inputs, labels in batches:
    logits = model(inputs)
    loss = criterion(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    epoch_loss += loss * inputs.size(0)
print(f"train loss {epoch_loss.item() / 80:.3f}")

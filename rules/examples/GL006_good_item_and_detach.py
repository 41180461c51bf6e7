"""GL006 (good): numbers and detached tensors are stored, so each batch's graph is freed."""
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(10, 3)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
criterion = nn.CrossEntropyLoss()
batches = [(torch.randn(16, 10), torch.randint(0, 3, (16,))) for _ in range(5)]

running_loss = 0.0
losses, all_logits = [], []
for inputs, labels in batches:
    logits = model(inputs)
    loss = criterion(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    running_loss += loss.item()
    losses.append(float(loss))
    all_logits.append(logits.detach())
print(running_loss / len(batches), losses[-1], torch.cat(all_logits).shape)

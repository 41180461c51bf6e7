"""GL001 (good): the usual loop, clearing before each backward."""
import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loss_fn = torch.nn.MSELoss()
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]

for inputs, targets in data:
    optimizer.zero_grad()
    loss = loss_fn(model(inputs), targets)
    loss.backward()
    optimizer.step()

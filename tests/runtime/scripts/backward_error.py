"""Backward through a freed graph: the error is raised inside the traced backward call."""
import torch

model = torch.nn.Linear(4, 1)
loss = model(torch.randn(8, 4)).pow(2).mean()
loss.backward()
loss.backward()  # Trying to backward through the graph a second time

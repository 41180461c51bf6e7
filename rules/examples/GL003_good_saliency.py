"""GL003 (good): a saliency map from the gradient of every output at once.

The outputs are a vector, and `gradient=torch.ones_like(scores)` says how to weight them.
"""
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
model.eval()

for _ in range(3):
    image = torch.randn(4, 6, requires_grad=True)
    scores = model(image)[:, 1]
    scores.backward(gradient=torch.ones_like(scores))
    saliency = image.grad.abs()
    print(saliency.amax(dim=1))

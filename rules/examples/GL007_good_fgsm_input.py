"""GL007 (good): an input made to require grad for an adversarial example; the loss passes the model."""
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
images = torch.randn(8, 10)
labels = torch.randint(0, 3, (8,))

images.requires_grad = True
loss = nn.functional.cross_entropy(model(images), labels)
model.zero_grad()
loss.backward()
adversarial = (images + 0.05 * images.grad.sign()).detach()
print(adversarial.shape)

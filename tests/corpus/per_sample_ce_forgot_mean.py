"""Noisy-label training: keep per-sample losses to find the small-loss samples
(co-teaching style selection) ... but the selection never happened and the per-sample
vector is back-propagated directly."""
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from noisy_cifar import NoisyCIFAR10, PreActResNet18  # local module, not shown

device = "cuda"
model = PreActResNet18(num_classes=10).to(device)
loader = DataLoader(NoisyCIFAR10(noise_rate=0.4), batch_size=128, shuffle=True, num_workers=4)
optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
history = torch.zeros(len(loader.dataset))

for epoch in range(200):
    model.train()
    for images, labels, index in loader:
        images, labels = images.to(device), labels.to(device)
        logits = model(images)
        loss = F.cross_entropy(logits, labels, reduction="none")
        history[index] = loss.detach().cpu()
        optimizer.zero_grad()
        loss.backward()  # expect: GL003
        optimizer.step()
    print(epoch, history.mean().item())

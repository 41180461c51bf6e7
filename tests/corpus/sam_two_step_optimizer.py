"""Sharpness-aware minimisation with a SAM wrapper optimizer: first_step / second_step clear
the gradients themselves (zero_grad=True), so the loop never calls zero_grad directly."""
import torch
import torch.nn.functional as F

from sam import SAM  # the popular two-step SAM wrapper, vendored
from wide_resnet import WideResNet  # local module, not shown
from cifar import get_loaders  # local module, not shown


def smooth_crossentropy(pred, gold, smoothing=0.1):
    n_class = pred.size(1)
    one_hot = torch.full_like(pred, fill_value=smoothing / (n_class - 1))
    one_hot.scatter_(dim=1, index=gold.unsqueeze(1), value=1.0 - smoothing)
    return F.kl_div(F.log_softmax(pred, dim=1), one_hot, reduction="none").sum(-1)


def train(epochs=200, device="cuda"):
    model = WideResNet(depth=16, width_factor=8, num_classes=10).to(device)
    base_optimizer = torch.optim.SGD
    optimizer = SAM(model.parameters(), base_optimizer, rho=2.0, adaptive=True, lr=0.1, momentum=0.9,
                    weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer.base_optimizer, T_max=epochs)
    train_loader, _ = get_loaders(batch_size=128)
    for epoch in range(epochs):
        model.train()
        for inputs, targets in train_loader:
            inputs, targets = inputs.to(device), targets.to(device)
            # first forward-backward pass
            loss = smooth_crossentropy(model(inputs), targets).mean()
            loss.backward()
            optimizer.first_step(zero_grad=True)
            # second forward-backward pass at the perturbed weights
            smooth_crossentropy(model(inputs), targets).mean().backward()
            optimizer.second_step(zero_grad=True)
        scheduler.step()

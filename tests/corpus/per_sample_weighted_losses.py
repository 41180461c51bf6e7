"""Class-imbalanced training with per-sample losses: reduction='none' losses are weighted
and reduced before backward (importance weights, masked token loss, OHEM)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def weighted_step(model, optimizer, x, y, sample_w):
    optimizer.zero_grad()
    per_sample = F.cross_entropy(model(x), y, reduction="none")
    loss = (per_sample * sample_w).sum() / sample_w.sum()
    loss.backward()
    optimizer.step()
    return loss.item()


def masked_lm_step(model, optimizer, tokens, targets, pad_id=0):
    optimizer.zero_grad()
    logits = model(tokens)
    token_loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    mask = (targets.flatten() != pad_id).float()
    loss = (token_loss * mask).sum() / mask.sum().clamp(min=1)
    loss.backward()
    optimizer.step()
    return loss.item()


def ohem_step(model, optimizer, x, y, keep=0.25):
    criterion = nn.CrossEntropyLoss(reduction="none")
    optimizer.zero_grad()
    losses = criterion(model(x), y)
    k = max(1, int(keep * losses.numel()))
    hard, _ = losses.topk(k)
    hard.mean().backward()
    optimizer.step()


def train(model, loader, epochs=10):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    counts = torch.bincount(torch.cat([y for _, y in loader]))
    class_w = counts.sum() / (len(counts) * counts.float())
    for epoch in range(epochs):
        for x, y in loader:
            if epoch < 3:
                ohem_step(model, optimizer, x, y)
            else:
                weighted_step(model, optimizer, x, y, class_w[y])

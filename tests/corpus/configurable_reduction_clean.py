"""A config-driven training loop: the loss reduction comes from the config, and per-sample
losses are reduced in both branches before backward."""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    reduction: str = "mean"
    focal: bool = False
    gamma: float = 2.0
    epochs: int = 10
    lr: float = 1e-3


def build_criterion(cfg: Config):
    return nn.CrossEntropyLoss(reduction=cfg.reduction)


def train(model, loader, cfg: Config):
    criterion = build_criterion(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for epoch in range(cfg.epochs):
        for x, y in loader:
            logits = model(x)
            if cfg.focal:
                ce = F.cross_entropy(logits, y, reduction="none")
                loss = ((1 - torch.exp(-ce)) ** cfg.gamma * ce).mean()
            else:
                loss = criterion(logits, y)
                if cfg.reduction == "none":
                    loss = loss.sum() / x.size(0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

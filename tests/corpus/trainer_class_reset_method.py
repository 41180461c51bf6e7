"""A reusable Trainer class: the gradient reset lives in `_reset`, called from train_step;
checkpointing and validation are methods too."""
from __future__ import annotations

import os
from typing import Optional

import torch
from torch import nn
from torch.utils.data import DataLoader


class Trainer:
    def __init__(self, model: nn.Module, train_loader: DataLoader, val_loader: Optional[DataLoader] = None,
                 lr: float = 1e-3, grad_clip: float = 1.0, ckpt_dir: str = "checkpoints"):
        self.model = model
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=0.98)
        self.criterion = nn.CrossEntropyLoss()
        self.grad_clip = grad_clip
        self.ckpt_dir = ckpt_dir
        self.step_count = 0

    def _reset(self):
        self.optimizer.zero_grad(set_to_none=True)

    def train_step(self, inputs, targets):
        self._reset()
        loss = self.criterion(self.model(inputs), targets)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.step_count += 1
        return loss.item()

    @torch.no_grad()
    def validate(self):
        if self.val_loader is None:
            return float("nan")
        self.model.eval()
        losses = [self.criterion(self.model(x), y).item() for x, y in self.val_loader]
        self.model.train()
        return sum(losses) / len(losses)

    def save(self, epoch):
        os.makedirs(self.ckpt_dir, exist_ok=True)
        torch.save({"model": self.model.state_dict(), "opt": self.optimizer.state_dict(), "epoch": epoch},
                   os.path.join(self.ckpt_dir, f"epoch{epoch}.pt"))

    def fit(self, epochs: int):
        for epoch in range(epochs):
            self.model.train()
            running = [self.train_step(x, y) for x, y in self.train_loader]
            self.scheduler.step()
            print(f"epoch {epoch}: train {sum(running) / len(running):.4f} val {self.validate():.4f}")
            self.save(epoch)

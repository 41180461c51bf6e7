"""A small Trainer class for tabular regression.

`_reset` clears the running metrics but nobody clears the optimizer's gradients.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 50
    lr: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 1e-5


class Trainer:
    def __init__(self, model: nn.Module, cfg: TrainConfig):
        self.model = model
        self.cfg = cfg
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.loss_fn = nn.MSELoss()
        self._reset()

    def _reset(self):
        self.seen = 0
        self.loss_sum = 0.0

    def train_step(self, x, y):
        pred = self.model(x).squeeze(-1)
        loss = self.loss_fn(pred, y)
        loss.backward()
        self.optimizer.step()
        self.seen += x.size(0)
        self.loss_sum += loss.item() * x.size(0)

    def fit(self, x_train: torch.Tensor, y_train: torch.Tensor):
        loader = DataLoader(TensorDataset(x_train, y_train), batch_size=self.cfg.batch_size, shuffle=True)
        for epoch in range(self.cfg.epochs):
            self.model.train()
            self._reset()
            for x, y in loader:
                self.train_step(x, y)  # expect: GL001
            log.info("epoch %d mse %.5f", epoch, self.loss_sum / max(self.seen, 1))
        return self.model


if __name__ == "__main__":
    torch.manual_seed(0)
    X = torch.randn(10_000, 16)
    Y = X @ torch.randn(16) + 0.1 * torch.randn(10_000)
    net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))
    Trainer(net, TrainConfig()).fit(X, Y)

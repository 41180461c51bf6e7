"""A plain LightningModule: Lightning owns the loop, zero_grad and step."""
import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, random_split
from torchvision import transforms
from torchvision.datasets import MNIST


class LitClassifier(L.LightningModule):
    def __init__(self, hidden=128, lr=1e-3):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log_dict({"val/loss": F.cross_entropy(logits, y), "val/acc": (logits.argmax(1) == y).float().mean()})

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=2)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss"}}


if __name__ == "__main__":
    ds = MNIST("data", download=True, transform=transforms.ToTensor())
    train, val = random_split(ds, [55000, 5000])
    trainer = L.Trainer(max_epochs=5, accelerator="auto", accumulate_grad_batches=2)
    trainer.fit(LitClassifier(), DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=256))

"""LightningModule with manual optimization for a two-headed model: the classification and the
reconstruction losses run backward separately through the shared encoder (the first must keep
the graph), with per-head gradient clipping."""
import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F


class TwoHeaded(L.LightningModule):
    def __init__(self, n_classes=10, lr=1e-3, recon_weight=0.5):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.encoder = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU())
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, n_classes))
        self.decoder = nn.Sequential(nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 3, 4, 2, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        opt = self.optimizers()
        opt.zero_grad()
        z = self.encoder(x)
        cls_loss = F.cross_entropy(self.classifier(z), y)
        rec_loss = self.hparams.recon_weight * F.mse_loss(self.decoder(z), x)
        self.manual_backward(cls_loss, retain_graph=True)
        self.manual_backward(rec_loss)
        self.clip_gradients(opt, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
        opt.step()
        self.log_dict({"cls": cls_loss, "rec": rec_loss}, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

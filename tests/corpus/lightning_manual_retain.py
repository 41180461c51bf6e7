"""LightningModule with manual optimization for a segmentation model with a
gradient-clipping schedule. The single manual_backward keeps its graph for nothing."""
import lightning as L
import torch
import torch.nn.functional as F
from segmentation_models_pytorch import Unet


class SegModule(L.LightningModule):
    def __init__(self, lr=1e-3, clip=1.0):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net = Unet("resnet34", encoder_weights="imagenet", classes=1)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        sched = self.lr_schedulers()
        images, masks = batch
        logits = self(images)
        loss = F.binary_cross_entropy_with_logits(logits, masks)
        opt.zero_grad()
        self.manual_backward(loss, retain_graph=True)  # expect: GL002
        self.clip_gradients(opt, gradient_clip_val=self.hparams.clip, gradient_clip_algorithm="norm")
        opt.step()
        sched.step()
        self.log("train_loss", loss, prog_bar=True)

    def validation_step(self, batch, batch_idx):
        images, masks = batch
        loss = F.binary_cross_entropy_with_logits(self(images), masks)
        self.log("val_loss", loss)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.hparams.lr, total_steps=10_000)
        return [opt], [sched]

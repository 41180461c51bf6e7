"""SRGAN-style super-resolution GAN. The generator step regenerates the fake batch, so the
discriminator loss graph is never walked again: its retain_graph=True only holds memory."""
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from sr_data import PatchDataset  # local module, not shown
from sr_models import SRDiscriminator, SRResNet, VGGPerceptualLoss  # local module, not shown

device = torch.device("cuda")
generator = SRResNet(scale=4).to(device)
discriminator = SRDiscriminator().to(device)
perceptual = VGGPerceptualLoss().to(device)
bce = nn.BCEWithLogitsLoss()
opt_g = torch.optim.Adam(generator.parameters(), lr=1e-4)
opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
loader = DataLoader(PatchDataset("div2k", crop=96, scale=4), batch_size=16, shuffle=True, num_workers=4)

for epoch in range(100):
    for lr_img, hr_img in loader:
        lr_img, hr_img = lr_img.to(device), hr_img.to(device)
        sr_img = generator(lr_img)
        real_logits = discriminator(hr_img)
        fake_logits = discriminator(sr_img)
        d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
        opt_d.zero_grad()
        d_loss.backward(retain_graph=True)  # expect: GL002
        opt_d.step()

        sr_img = generator(lr_img)
        fake_logits = discriminator(sr_img)
        g_loss = perceptual(sr_img, hr_img) + 1e-3 * bce(fake_logits, torch.ones_like(fake_logits))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    print(f"epoch {epoch}: d {d_loss.item():.4f} g {g_loss.item():.4f}")

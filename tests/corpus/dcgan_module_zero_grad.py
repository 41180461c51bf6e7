"""DCGAN on MNIST-32 with nn.Module.zero_grad() (netD.zero_grad / netG.zero_grad) instead of the
optimizers' zero_grad. The real and fake discriminator losses are accumulated on purpose
before optimizerD.step()."""
import torch
import torch.nn as nn
import torch.optim as optim
from torchvision import datasets, transforms

from dcgan_models import Discriminator32, Generator32, weights_init  # local module, not shown

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
nz = 64
loader = torch.utils.data.DataLoader(
    datasets.MNIST("data", download=True, transform=transforms.Compose([
        transforms.Resize(32), transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])),
    batch_size=128, shuffle=True, drop_last=True)

netG = Generator32(nz).to(device)
netD = Discriminator32().to(device)
netG.apply(weights_init)
netD.apply(weights_init)
criterion = nn.BCELoss()
optimizerD = optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
optimizerG = optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
real_label, fake_label = 1.0, 0.0

for epoch in range(25):
    for i, (data, _) in enumerate(loader):
        netD.zero_grad()
        real = data.to(device)
        batch_size = real.size(0)
        label = torch.full((batch_size,), real_label, device=device)
        output = netD(real)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()

        noise = torch.randn(batch_size, nz, 1, 1, device=device)
        fake = netG(noise)
        label.fill_(fake_label)
        output = netD(fake.detach())
        errD_fake = criterion(output, label)
        errD_fake.backward()
        errD = errD_real + errD_fake
        optimizerD.step()

        netG.zero_grad()
        label.fill_(real_label)
        output = netD(fake)
        errG = criterion(output, label)
        errG.backward()
        optimizerG.step()
        if i % 100 == 0:
            print(f"[{epoch}/25][{i}/{len(loader)}] D {errD.item():.3f} G {errG.item():.3f} D(x) {D_x:.3f}")

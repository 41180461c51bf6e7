"""Convolutional VAE on Fashion-MNIST. The ELBO is computed per sample (dim=1 sums) and the
batch mean was forgotten before backward."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision import datasets, transforms

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
LATENT = 16


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                                 nn.Flatten())
        self.mu = nn.Linear(64 * 7 * 7, LATENT)
        self.logvar = nn.Linear(64 * 7 * 7, LATENT)
        self.dec_fc = nn.Linear(LATENT, 64 * 7 * 7)
        self.dec = nn.Sequential(nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1))

    def forward(self, x):
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.dec(self.dec_fc(z).view(-1, 64, 7, 7))
        return logits, mu, logvar


loader = torch.utils.data.DataLoader(
    datasets.FashionMNIST("data", train=True, download=True, transform=transforms.ToTensor()),
    batch_size=128, shuffle=True)
model = VAE().to(device)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)

for epoch in range(30):
    for x, _ in loader:
        x = x.to(device)
        logits, mu, logvar = model(x)
        recon = F.binary_cross_entropy_with_logits(logits.view(x.size(0), -1), x.view(x.size(0), -1),
                                                   reduction="none").sum(dim=1)
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
        neg_elbo = recon + kld
        opt.zero_grad()
        neg_elbo.backward()  # expect: GL003
        opt.step()
    print(f"epoch {epoch}: -elbo {neg_elbo.mean().item():.2f}")

"""1-D GAN fitting a bimodal distribution. Generated batches are kept in a list for the final
histogram plot (without detach), and the generator backward asks to retain its graph although
no backward ever runs through it again."""
import matplotlib.pyplot as plt
import torch
import torch.nn as nn

torch.manual_seed(0)
gen = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
disc = nn.Sequential(nn.Linear(1, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3)
opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
bce = nn.BCEWithLogitsLoss()
ones, zeros = torch.ones(256, 1), torch.zeros(256, 1)
history = []


def sample_real(n):
    mode = torch.randint(0, 2, (n, 1)).float()
    return torch.randn(n, 1) * 0.3 + mode * 4.0 - 2.0


for step in range(5000):
    real = sample_real(256)
    fake = gen(torch.randn(256, 8))

    opt_d.zero_grad()
    d_loss = bce(disc(real), ones) + bce(disc(fake.detach()), zeros)
    d_loss.backward()
    opt_d.step()

    opt_g.zero_grad()
    g_loss = bce(disc(fake), ones)
    g_loss.backward(retain_graph=True)  # expect: GL002
    opt_g.step()
    if step % 500 == 0:
        history.append(fake)

plt.hist(torch.cat(history).detach().numpy().ravel(), bins=100)
plt.savefig("gan_hist.png")

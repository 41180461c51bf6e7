"""A GAN step with two backward calls, one of which (chosen by argv) has a bug that a static
finding names through another line: `--leaf` makes the critic's loss a new leaf (GL007, reported
where the leaf is made, about `critic_loss.backward()`); `--history` keeps the generator's losses
with their graphs (GL006, reported at the store, about `gen_loss.backward()`). The other backward
is nearer to the finding in the file."""
import sys

import torch
from torch import nn

torch.manual_seed(0)
torch.set_num_threads(1)
generator = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
critic = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
gen_opt = torch.optim.Adam(generator.parameters(), lr=1e-3)
critic_opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
bce = nn.BCEWithLogitsLoss()
gen_history, critic_history = [], []
for step in range(6):
    fake = generator(torch.randn(6, 3))
    critic_loss = bce(critic(torch.randn(6, 2)), torch.ones(6, 1)) + bce(critic(fake.detach()), torch.zeros(6, 1))
    if "--leaf" in sys.argv:
        critic_loss = torch.tensor(critic_loss.item(), requires_grad=True)
    gen_loss = bce(critic(fake), torch.ones(6, 1))
    gen_opt.zero_grad()
    gen_loss.backward()
    gen_opt.step()
    critic_opt.zero_grad()
    critic_loss.backward()
    critic_opt.step()
    critic_history.append(critic_loss.item())
    if "--history" in sys.argv:
        gen_history.append(gen_loss)
print(len(gen_history), sum(critic_history))

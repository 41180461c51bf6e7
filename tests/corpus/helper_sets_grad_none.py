"""Custom training loop that clears gradients with a small helper (grad = None), used by a
research codebase that mixes several optimizers over parameter subsets."""
import torch
import torch.nn as nn


def clear_grads(module: nn.Module) -> None:
    for p in module.parameters():
        p.grad = None


def zero_grads_inplace(params) -> None:
    for p in params:
        if p.grad is not None:
            p.grad.detach_()
            p.grad.zero_()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.GRU(32, 128, batch_first=True)
        self.head = nn.Linear(128, 5)

    def forward(self, x):
        _, h = self.encoder(x)
        return self.head(h[-1])


def train(loader, epochs=20):
    net = Net()
    enc_opt = torch.optim.Adam(net.encoder.parameters(), lr=1e-3)
    head_opt = torch.optim.SGD(net.head.parameters(), lr=1e-2, momentum=0.9)
    for epoch in range(epochs):
        for seq, label in loader:
            clear_grads(net)
            loss = nn.functional.cross_entropy(net(seq), label)
            loss.backward()
            enc_opt.step()
            head_opt.step()
    # second phase: fine-tune the head alone
    for epoch in range(5):
        for seq, label in loader:
            zero_grads_inplace(net.head.parameters())
            with torch.no_grad():
                _, h = net.encoder(seq)
            loss = nn.functional.cross_entropy(net.head(h[-1]), label)
            loss.backward()
            head_opt.step()
    return net

"""MAML on Omniglot 5-way 1-shot with torch.func.functional_call and second-order gradients."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from omniglot_tasks import TaskSampler  # local module, not shown


def conv_block(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o, track_running_stats=False), nn.ReLU(),
                         nn.MaxPool2d(2))


class ConvNet(nn.Module):
    def __init__(self, ways):
        super().__init__()
        self.features = nn.Sequential(conv_block(1, 64), conv_block(64, 64), conv_block(64, 64), conv_block(64, 64))
        self.fc = nn.Linear(64, ways)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def adapt(model, params, x, y, steps, lr):
    for _ in range(steps):
        loss = F.cross_entropy(functional_call(model, params, (x,)), y)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        params = {name: p - lr * g for (name, p), g in zip(params.items(), grads)}
    return params


def main(ways=5, shots=1, meta_batch=32, iterations=60000):
    device = torch.device("cuda")
    model = ConvNet(ways).to(device)
    meta_opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = TaskSampler("omniglot", ways=ways, shots=shots, queries=15)
    for it in range(iterations):
        meta_opt.zero_grad()
        outer_loss, outer_acc = 0.0, 0.0
        for task in sampler.sample(meta_batch):
            xs, ys, xq, yq = (t.to(device) for t in task)
            fast = adapt(model, dict(model.named_parameters()), xs, ys, steps=1, lr=0.4)
            logits = functional_call(model, fast, (xq,))
            loss = F.cross_entropy(logits, yq) / meta_batch
            loss.backward()
            outer_loss += loss.item()
            outer_acc += (logits.argmax(1) == yq).float().mean().item() / meta_batch
        meta_opt.step()
        if it % 100 == 0:
            print(f"it {it}: loss {outer_loss:.3f} acc {outer_acc:.3f}")


if __name__ == "__main__":
    main()

"""Old-style training script (pre-0.4 idioms) kept alive: NLLLoss(reduce=False) plus
torch.autograd.backward on the per-sample vector."""
import torch
import torch.nn as nn
from torch.autograd import Variable

model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10), nn.LogSoftmax(dim=1))
criterion = nn.NLLLoss(reduce=False)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)


def run_epoch(loader):
    for data, target in loader:
        data, target = Variable(data.view(-1, 784)), Variable(target)
        optimizer.zero_grad()
        losses = criterion(model(data), target)
        torch.autograd.backward(losses)  # expect: GL003
        optimizer.step()


if __name__ == "__main__":
    from torchvision import datasets, transforms

    ds = datasets.MNIST("data", train=True, download=True, transform=transforms.ToTensor())
    for _ in range(5):
        run_epoch(torch.utils.data.DataLoader(ds, batch_size=100, shuffle=True))

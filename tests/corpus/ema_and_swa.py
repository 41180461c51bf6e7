"""Training with an exponential moving average of the weights, followed by an SWA phase
with SWALR; OneCycleLR stepped every batch in the first phase."""
import copy

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from cifar import get_loaders, wide_resnet  # local module, not shown


class EMA:
    def __init__(self, model, decay=0.999):
        self.shadow = copy.deepcopy(model).eval()
        self.decay = decay
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model):
        for s, p in zip(self.shadow.parameters(), model.parameters()):
            s.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)
        for s, b in zip(self.shadow.buffers(), model.buffers()):
            s.copy_(b)


train_loader, test_loader = get_loaders(batch_size=128)
model = wide_resnet(depth=28, widen=10).cuda()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
epochs, swa_start = 200, 160
sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=swa_start * len(train_loader))
swa_model = AveragedModel(model)
swa_sched = SWALR(optimizer, swa_lr=0.05)
ema = EMA(model)

for epoch in range(epochs):
    model.train()
    for x, y in train_loader:
        x, y = x.cuda(non_blocking=True), y.cuda(non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        ema.update(model)
        if epoch < swa_start:
            sched.step()
    if epoch >= swa_start:
        swa_model.update_parameters(model)
        swa_sched.step()

update_bn(train_loader, swa_model)
torch.save({"ema": ema.shadow.state_dict(), "swa": swa_model.module.state_dict()}, "final.pt")

"""Mixture-of-experts style training with one optimizer per parameter group kept in a dict;
every optimizer is cleared and stepped through loops over the dict."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from moe import MoEClassifier, get_loader  # local module, not shown

model = MoEClassifier(n_experts=8)
optimizers = {
    "router": torch.optim.Adam(model.router.parameters(), lr=1e-4),
    "experts": torch.optim.SGD(model.experts.parameters(), lr=0.05, momentum=0.9),
    "head": torch.optim.Adam(model.head.parameters(), lr=1e-3),
}
schedulers = [torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5) for opt in optimizers.values()]

for epoch in range(40):
    for x, y in get_loader("train", batch_size=128):
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        logits, balance_loss = model(x)
        loss = F.cross_entropy(logits, y) + 0.01 * balance_loss
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for opt in optimizers.values():
            opt.step()
    for sched in schedulers:
        sched.step()

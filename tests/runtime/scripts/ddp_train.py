"""DDP on CPU (gloo) for `torchrun --nproc_per_node 2 -m gradlint run ddp_train.py`.

Rank 1 forgets to clear its gradients only with --stale-rank1: the merged report must confirm GL001.
"""
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = DistributedDataParallel(torch.nn.Linear(4, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
stale = "--stale" in sys.argv[1:]
for step in range(3):
    if not stale:
        optimizer.zero_grad()
    loss = model(torch.randn(8, 4) + rank).pow(2).mean()
    loss.backward()
    optimizer.step()
dist.destroy_process_group()

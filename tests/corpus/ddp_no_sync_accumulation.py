"""DistributedDataParallel training with gradient accumulation: all but the last
micro-batch run under model.no_sync() to skip the all-reduce."""
import contextlib
import os

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from recsys import DLRM, ClickLogs  # local module, not shown


def main(accum_steps=4, epochs=3):
    dist.init_process_group("nccl")
    rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(rank)
    model = DDP(DLRM().cuda(rank), device_ids=[rank])
    dataset = ClickLogs("criteo/train")
    sampler = DistributedSampler(dataset)
    loader = DataLoader(dataset, batch_size=2048, sampler=sampler, num_workers=8, pin_memory=True)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.01)
    loss_fn = nn.BCEWithLogitsLoss()

    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        model.train()
        for i, (dense, sparse, label) in enumerate(loader):
            dense, sparse, label = dense.cuda(rank), sparse.cuda(rank), label.cuda(rank)
            boundary = (i + 1) % accum_steps == 0
            ctx = contextlib.nullcontext() if boundary else model.no_sync()
            with ctx:
                loss = loss_fn(model(dense, sparse).squeeze(1), label.float()) / accum_steps
                loss.backward()
            if boundary:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        if rank == 0:
            torch.save(model.module.state_dict(), f"dlrm_{epoch}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

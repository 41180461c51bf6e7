"""Production-ish loop: skip empty batches, skip non-finite losses, recover from CUDA OOM by
skipping the batch. zero_grad runs at the top of every iteration, so every skip path is safe."""
import logging
import math

import torch
import torch.nn.functional as F

log = logging.getLogger("train")


def train_epoch(model, loader, optimizer, scheduler, device, max_norm=1.0):
    model.train()
    skipped = 0
    for step, batch in enumerate(loader):
        optimizer.zero_grad(set_to_none=True)
        if batch is None or batch["input"].numel() == 0:
            continue
        try:
            x = batch["input"].to(device)
            y = batch["target"].to(device)
            loss = F.cross_entropy(model(x), y)
            if not math.isfinite(loss.item()):
                log.warning("non-finite loss at step %d, skipping", step)
                skipped += 1
                continue
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            if not torch.isfinite(grad_norm):
                skipped += 1
                continue
            optimizer.step()
            scheduler.step()
        except torch.cuda.OutOfMemoryError:
            log.error("OOM at step %d (batch of %d), skipping", step, batch["input"].size(0))
            torch.cuda.empty_cache()
            skipped += 1
            continue
    return skipped

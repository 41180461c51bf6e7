"""AMP training with GradScaler and gradient accumulation; the step and the clear are gated
together on the accumulation boundary."""
import torch
import torch.nn as nn
from torch.amp import GradScaler, autocast

from speech import ConformerCTC, build_loader  # local module, not shown

ACCUM = 4


def train(epochs=50, device="cuda"):
    model = ConformerCTC(vocab=32).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=1e-3)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=10_000)
    scaler = GradScaler("cuda")
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    loader = build_loader("train-clean-100", batch_size=16)
    optimizer.zero_grad(set_to_none=True)
    for epoch in range(epochs):
        model.train()
        for i, (feats, feat_lens, tokens, token_lens) in enumerate(loader):
            feats, tokens = feats.to(device), tokens.to(device)
            with autocast("cuda", dtype=torch.float16):
                log_probs, out_lens = model(feats, feat_lens)
                loss = ctc(log_probs.transpose(0, 1).float(), tokens, out_lens, token_lens) / ACCUM
            scaler.scale(loss).backward()
            if (i + 1) % ACCUM == 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                warmup.step()
        print(f"epoch {epoch} loss {loss.item() * ACCUM:.3f} scale {scaler.get_scale():.0f}")

"""Character-level transformer LM with AMP. The per-token loss is masked for padding, but the
masked tensor is back-propagated without being reduced."""
import torch
import torch.nn.functional as F

from charlm import CharTransformer, padded_batches  # local module, not shown

device = "cuda"
model = CharTransformer(vocab=256, d_model=384, n_layers=6).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98))
scaler = torch.cuda.amp.GradScaler()
PAD = 0

for epoch in range(20):
    for tokens in padded_batches("enwik8", batch_size=32, seq_len=256):
        tokens = tokens.to(device)
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        with torch.autocast("cuda", dtype=torch.float16):
            logits = model(inputs)
            token_loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
        mask = (targets.reshape(-1) != PAD).float()
        masked = token_loss * mask
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(masked).backward()  # expect: GL003
        scaler.step(optimizer)
        scaler.update()
    print(epoch, (masked.sum() / mask.sum()).item())

"""Large-batch contrastive fine-tuning split into micro-batches on one GPU. Each micro-batch
builds its own graph; retain_graph=True (copied from a forum answer) only keeps them alive."""
import torch
import torch.nn.functional as F

from clip_small import ImageTextDataset, SmallCLIP  # local module, not shown

device = "cuda"
model = SmallCLIP().to(device)
loader = torch.utils.data.DataLoader(ImageTextDataset("cc3m"), batch_size=1024, shuffle=True, num_workers=8)
optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.2)
micro = 4

for epoch in range(10):
    for images, tokens in loader:
        optimizer.zero_grad()
        for img_chunk, tok_chunk in zip(images.chunk(micro), tokens.chunk(micro)):
            img_emb, txt_emb = model(img_chunk.to(device), tok_chunk.to(device))
            logits = model.logit_scale.exp() * img_emb @ txt_emb.t()
            labels = torch.arange(logits.size(0), device=device)
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / (2 * micro)
            loss.backward(retain_graph=True)  # expect: GL002
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
    print(epoch, loss.item())

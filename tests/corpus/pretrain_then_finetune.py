"""Two-stage script: masked-feature pre-training of an encoder, then supervised fine-tuning.
The first loop is fine; the second one (added later) never clears the gradients."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from tabular import TabularEncoder, labelled_loader, unlabelled_loader  # local module, not shown

encoder = TabularEncoder(n_features=54, d_model=128)
decoder = nn.Linear(128, 54)
pre_opt = torch.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()), lr=1e-3)

for epoch in range(50):
    for x in unlabelled_loader(batch_size=512):
        mask = (torch.rand_like(x) < 0.15).float()
        recon = decoder(encoder(x * (1 - mask)))
        loss = (F.mse_loss(recon, x, reduction="none") * mask).sum() / mask.sum()
        pre_opt.zero_grad()
        loss.backward()
        pre_opt.step()

head = nn.Linear(128, 7)
ft_opt = torch.optim.AdamW(list(encoder.parameters()) + list(head.parameters()), lr=2e-4)
for epoch in range(20):
    correct = 0
    for x, y in labelled_loader(batch_size=256):
        logits = head(encoder(x))
        loss = F.cross_entropy(logits, y)
        loss.backward()  # expect: GL001
        ft_opt.step()
        correct += (logits.argmax(1) == y).sum().item()
    print(epoch, correct)

"""Causal LM fine-tuning with gradient accumulation.

The clear is gated on the accumulation boundary but the optimizer step was dedented out of the
`if`: every micro-batch steps, and from the second micro-batch on the step re-applies
gradients that earlier steps already used.
"""
import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

from corpus_data import load_tokenized  # local helper, not shown

model = AutoModelForCausalLM.from_pretrained("gpt2").cuda()
train_ds = load_tokenized("wikitext-103", block_size=512)
loader = DataLoader(train_ds, batch_size=4, shuffle=True)
grad_accum = 8
epochs = 2
optimizer = torch.optim.AdamW(model.parameters(), lr=6e-5)
scheduler = get_cosine_schedule_with_warmup(optimizer, 200, epochs * len(loader) // grad_accum)

model.train()
for epoch in range(epochs):
    for step, batch in enumerate(loader):
        input_ids = batch["input_ids"].cuda()
        out = model(input_ids=input_ids, labels=input_ids)
        loss = out.loss / grad_accum
        loss.backward()  # expect: GL001
        optimizer.step()
        if (step + 1) % grad_accum == 0:
            scheduler.step()
            optimizer.zero_grad()
        if step % 200 == 0:
            print(epoch, step, loss.item() * grad_accum)

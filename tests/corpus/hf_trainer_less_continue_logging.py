#!/usr/bin/env python
"""Fine-tune a sequence classifier without Trainer.

zero_grad sits at the end of the step, but the logging shortcut `continue`s past it on
every non-logging step, so the next backward adds onto gradients the optimizer already used.
"""
import math

import torch
from datasets import load_dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, get_scheduler

MODEL = "bert-base-cased"
LOG_EVERY = 50


def main():
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    raw = load_dataset("glue", "mrpc")

    def tokenize(batch):
        return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True)

    tokenized = raw.map(tokenize, batched=True).remove_columns(["sentence1", "sentence2", "idx"])
    tokenized = tokenized.rename_column("label", "labels")
    tokenized.set_format("torch")
    collator = DataCollatorWithPadding(tokenizer)
    train_dl = DataLoader(tokenized["train"], shuffle=True, batch_size=16, collate_fn=collator)

    model = AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=2)
    device = torch.device("cuda")
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01)
    num_epochs = 3
    total_steps = num_epochs * len(train_dl)
    lr_scheduler = get_scheduler("linear", optimizer=optimizer, num_warmup_steps=math.ceil(0.1 * total_steps),
                                 num_training_steps=total_steps)

    progress = tqdm(range(total_steps))
    global_step = 0
    model.train()
    for epoch in range(num_epochs):
        for batch in train_dl:
            batch = {k: v.to(device) for k, v in batch.items()}
            outputs = model(**batch)
            loss = outputs.loss
            loss.backward()  # expect: GL001
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            lr_scheduler.step()
            progress.update(1)
            global_step += 1
            if global_step % LOG_EVERY != 0:
                continue
            progress.set_postfix(loss=loss.item(), lr=lr_scheduler.get_last_lr()[0])
            optimizer.zero_grad()

    model.save_pretrained("mrpc-bert")


if __name__ == "__main__":
    main()

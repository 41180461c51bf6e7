"""Summarization fine-tuning without Trainer: get_scheduler, gradient accumulation,
gradient clipping, per-step scheduler, periodic evaluation."""
import argparse
import math

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq, get_scheduler

from summarization_data import load_and_tokenize  # local module, not shown


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="t5-small")
    p.add_argument("--gradient_accumulation_steps", type=int, default=4)
    p.add_argument("--num_train_epochs", type=int, default=3)
    p.add_argument("--learning_rate", type=float, default=3e-4)
    p.add_argument("--max_grad_norm", type=float, default=1.0)
    return p.parse_args()


def evaluate(model, loader, device):
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            total += model(**batch).loss.item()
            n += 1
    model.train()
    return total / max(n, 1)


def main():
    args = parse_args()
    device = torch.device("cuda")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSeq2SeqLM.from_pretrained(args.model).to(device)
    train_ds, eval_ds = load_and_tokenize(tokenizer)
    collator = DataCollatorForSeq2Seq(tokenizer, model=model)
    train_dl = DataLoader(train_ds, batch_size=8, shuffle=True, collate_fn=collator)
    eval_dl = DataLoader(eval_ds, batch_size=32, collate_fn=collator)

    no_decay = ["bias", "LayerNorm.weight"]
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate)
    updates_per_epoch = math.ceil(len(train_dl) / args.gradient_accumulation_steps)
    max_train_steps = args.num_train_epochs * updates_per_epoch
    lr_scheduler = get_scheduler("linear", optimizer=optimizer, num_warmup_steps=0, num_training_steps=max_train_steps)

    progress_bar = tqdm(range(max_train_steps))
    completed_steps = 0
    model.train()
    for epoch in range(args.num_train_epochs):
        for step, batch in enumerate(train_dl):
            batch = {k: v.to(device) for k, v in batch.items()}
            outputs = model(**batch)
            loss = outputs.loss / args.gradient_accumulation_steps
            loss.backward()
            if (step + 1) % args.gradient_accumulation_steps == 0 or step == len(train_dl) - 1:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
                progress_bar.update(1)
                completed_steps += 1
            if completed_steps >= max_train_steps:
                break
        print(f"epoch {epoch}: eval loss {evaluate(model, eval_dl, device):.4f}")
    model.save_pretrained("out")


if __name__ == "__main__":
    main()

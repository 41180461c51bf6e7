"""Token classification (NER) with accelerate. The loop steps the optimizer and the scheduler
but never clears the gradients."""
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification, get_scheduler

from ner_data import load_conll  # local module, not shown


def main(num_epochs=3, lr=2e-5):
    accelerator = Accelerator()
    train_ds, tokenizer, label_list = load_conll("conll2003")
    model = AutoModelForTokenClassification.from_pretrained("bert-base-cased", num_labels=len(label_list))
    collator = DataCollatorForTokenClassification(tokenizer)
    train_dl = DataLoader(train_ds, shuffle=True, batch_size=16, collate_fn=collator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    lr_scheduler = get_scheduler("linear", optimizer=optimizer, num_warmup_steps=0,
                                 num_training_steps=num_epochs * len(train_dl))
    model, optimizer, train_dl, lr_scheduler = accelerator.prepare(model, optimizer, train_dl, lr_scheduler)

    for epoch in range(num_epochs):
        model.train()
        for step, batch in enumerate(train_dl):
            outputs = model(**batch)
            loss = outputs.loss
            accelerator.backward(loss)  # expect: GL001
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            lr_scheduler.step()
            if step % 100 == 0:
                accelerator.print(f"epoch {epoch} step {step} loss {loss.item():.4f}")
    accelerator.wait_for_everyone()
    accelerator.unwrap_model(model).save_pretrained("ner-out", save_function=accelerator.save)


if __name__ == "__main__":
    main()

"""Masked-LM style fine-tuning with accelerate. The token loss is kept per token
(reduction='none') to apply a padding mask... which is applied only for logging."""
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import AutoModelForMaskedLM, AutoTokenizer, get_linear_schedule_with_warmup

from mlm_data import build_mlm_dataset  # local module, not shown


def main():
    accelerator = Accelerator(mixed_precision="bf16")
    tok = AutoTokenizer.from_pretrained("roberta-base")
    model = AutoModelForMaskedLM.from_pretrained("roberta-base")
    dl = DataLoader(build_mlm_dataset(tok), batch_size=32, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    sched = get_linear_schedule_with_warmup(optimizer, 500, 3 * len(dl))
    model, optimizer, dl, sched = accelerator.prepare(model, optimizer, dl, sched)

    for epoch in range(3):
        model.train()
        for batch in dl:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            token_loss = F.cross_entropy(logits.transpose(1, 2), batch["labels"], ignore_index=-100,
                                         reduction="none")
            accelerator.backward(token_loss)  # expect: GL003
            optimizer.step()
            sched.step()
            optimizer.zero_grad()
            mask = (batch["labels"] != -100).float()
            if accelerator.is_main_process:
                print(epoch, ((token_loss * mask).sum() / mask.sum()).item())
    accelerator.wait_for_everyone()
    accelerator.unwrap_model(model).save_pretrained("mlm-out", save_function=accelerator.save)


if __name__ == "__main__":
    main()

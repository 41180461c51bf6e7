"""Distil a BERT teacher into a small student with temperature-scaled KL + hard labels,
mixed in one scalar loss; teacher logits precomputed under inference_mode."""
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

from glue_loaders import sst2_loaders  # local module, not shown

device = "cuda"
teacher = AutoModelForSequenceClassification.from_pretrained("textattack/bert-base-uncased-SST-2").to(device).eval()
student = AutoModelForSequenceClassification.from_pretrained("google/bert_uncased_L-4_H-256_A-4", num_labels=2)
student.to(device)
train_dl, dev_dl = sst2_loaders(batch_size=64)
optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
scheduler = get_linear_schedule_with_warmup(optimizer, 100, 5 * len(train_dl))
temperature, alpha = 3.0, 0.7

for epoch in range(5):
    student.train()
    for batch in train_dl:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        with torch.inference_mode():
            t_logits = teacher(**batch).logits
        s_logits = student(**batch).logits
        soft = F.kl_div(F.log_softmax(s_logits / temperature, dim=-1), F.log_softmax(t_logits / temperature, dim=-1),
                        reduction="batchmean", log_target=True) * temperature ** 2
        hard = F.cross_entropy(s_logits, labels)
        loss = alpha * soft + (1 - alpha) * hard
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()

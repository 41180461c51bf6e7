"""Sequence-level distillation for a small BiLSTM tagger: per-sample KL divergence summed
over classes (dim=1), the batch reduction is missing."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from tagger_data import batches, load_teacher_logits  # local module, not shown


class Tagger(nn.Module):
    def __init__(self, vocab, n_tags, dim=128):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * dim, n_tags)

    def forward(self, tokens):
        h, _ = self.rnn(self.emb(tokens))
        return self.out(h[:, -1])


student = Tagger(30_000, 17)
optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
teacher_logits = load_teacher_logits()
temperature = 2.0

for epoch in range(10):
    for idx, tokens in batches(batch_size=64):
        s = F.log_softmax(student(tokens) / temperature, dim=-1)
        t = F.softmax(teacher_logits[idx] / temperature, dim=-1)
        kl = F.kl_div(s, t, reduction="none").sum(dim=1) * temperature ** 2
        optimizer.zero_grad()
        kl.backward()  # expect: GL003
        optimizer.step()

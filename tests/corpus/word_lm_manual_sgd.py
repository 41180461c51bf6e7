"""Word-level LSTM language model, truncated BPTT with repackaged hidden state and a
hand-written SGD update (no torch.optim), gradients cleared with model.zero_grad()."""
import math
import time

import torch
import torch.nn as nn

from lm_corpus import Corpus, batchify, get_batch  # local module, not shown

BPTT, CLIP, LR = 35, 0.25, 20.0
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
corpus = Corpus("wikitext-2")
train_data = batchify(corpus.train, 20).to(device)


class RNNModel(nn.Module):
    def __init__(self, ntoken, ninp=200, nhid=200, nlayers=2, dropout=0.2):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.nhid, self.nlayers = nhid, nlayers

    def forward(self, x, hidden):
        out, hidden = self.rnn(self.drop(self.encoder(x)), hidden)
        return self.decoder(self.drop(out)), hidden

    def init_hidden(self, bsz):
        w = next(self.parameters())
        return (w.new_zeros(self.nlayers, bsz, self.nhid), w.new_zeros(self.nlayers, bsz, self.nhid))


def repackage_hidden(h):
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


ntokens = len(corpus.dictionary)
model = RNNModel(ntokens).to(device)
criterion = nn.NLLLoss()
lr = LR
for epoch in range(1, 41):
    model.train()
    total_loss, start = 0.0, time.time()
    hidden = model.init_hidden(20)
    for batch, i in enumerate(range(0, train_data.size(0) - 1, BPTT)):
        data, targets = get_batch(train_data, i, BPTT)
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(data, hidden)
        loss = criterion(torch.log_softmax(output.view(-1, ntokens), dim=-1), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        total_loss += loss.item()
        if batch % 200 == 0 and batch > 0:
            cur = total_loss / 200
            print(f"| epoch {epoch:3d} | lr {lr:02.2f} | loss {cur:5.2f} | ppl {math.exp(cur):8.2f}")
            total_loss = 0.0
    lr /= 4.0 if epoch % 10 == 0 else 1.0

"""GRU encoder-decoder for translation with separate encoder and decoder optimizers and
teacher forcing; the loss is summed over decoding steps into one scalar."""
import random
import time

import torch
import torch.nn as nn

from lang import MAX_LENGTH, SOS, EOS, tensors_from_pair  # local module, not shown

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Encoder(nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        self.gru = nn.GRU(hidden, hidden)

    def forward(self, token, hidden):
        return self.gru(self.embedding(token).view(1, 1, -1), hidden)


class Decoder(nn.Module):
    def __init__(self, hidden, vocab):
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        self.gru = nn.GRU(hidden, hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, token, hidden):
        out, hidden = self.gru(torch.relu(self.embedding(token).view(1, 1, -1)), hidden)
        return torch.log_softmax(self.out(out[0]), dim=1), hidden


def train_pair(inp, tgt, encoder, decoder, enc_opt, dec_opt, criterion, teacher_forcing=0.5):
    hidden = torch.zeros(1, 1, encoder.gru.hidden_size, device=device)
    enc_opt.zero_grad()
    dec_opt.zero_grad()
    for ei in range(inp.size(0)):
        _, hidden = encoder(inp[ei], hidden)
    dec_input = torch.tensor([[SOS]], device=device)
    loss = 0
    use_tf = random.random() < teacher_forcing
    for di in range(tgt.size(0)):
        dec_out, hidden = decoder(dec_input, hidden)
        loss += criterion(dec_out, tgt[di])
        if use_tf:
            dec_input = tgt[di]
        else:
            dec_input = dec_out.topk(1)[1].squeeze().detach()
            if dec_input.item() == EOS:
                break
    loss.backward()
    enc_opt.step()
    dec_opt.step()
    return loss.item() / tgt.size(0)


def train_iters(pairs, encoder, decoder, n_iters=75000, lr=0.01):
    enc_opt = torch.optim.SGD(encoder.parameters(), lr=lr)
    dec_opt = torch.optim.SGD(decoder.parameters(), lr=lr)
    criterion = nn.NLLLoss()
    start, total = time.time(), 0.0
    for it in range(1, n_iters + 1):
        inp, tgt = tensors_from_pair(random.choice(pairs))
        total += train_pair(inp, tgt, encoder, decoder, enc_opt, dec_opt, criterion)
        if it % 5000 == 0:
            print(f"{time.time() - start:.0f}s ({it}) {total / 5000:.4f}")
            total = 0.0

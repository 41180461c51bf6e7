"""Character-level LSTM language model with truncated BPTT.

The hidden state is detached at the start of every chunk, so the next chunk's backward can
never reach this chunk's graph: retain_graph=True only holds memory.
"""
import torch
import torch.nn as nn

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
text = open("input.txt", encoding="utf-8").read()
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)

BATCH, BPTT, HIDDEN = 32, 100, 512
n = data.size(0) // BATCH
data = data[: n * BATCH].view(BATCH, n).t().contiguous().to(device)  # (time, batch)


class CharLSTM(nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab, 128)
        self.lstm = nn.LSTM(128, hidden, num_layers=2, dropout=0.2)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x, state):
        y, state = self.lstm(self.embed(x), state)
        return self.out(y), state


def detach_state(state):
    return tuple(s.detach() for s in state)


model = CharLSTM(len(chars), HIDDEN).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
criterion = nn.CrossEntropyLoss()

for epoch in range(20):
    state = (torch.zeros(2, BATCH, HIDDEN, device=device), torch.zeros(2, BATCH, HIDDEN, device=device))
    for i in range(0, data.size(0) - 1, BPTT):
        seq_len = min(BPTT, data.size(0) - 1 - i)
        inputs = data[i:i + seq_len]
        targets = data[i + 1:i + 1 + seq_len]
        state = detach_state(state)
        optimizer.zero_grad()
        logits, state = model(inputs, state)
        loss = criterion(logits.view(-1, len(chars)), targets.reshape(-1))
        loss.backward(retain_graph=True)  # expect: GL002
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if (i // BPTT) % 100 == 0:
            print(f"epoch {epoch} chunk {i // BPTT} loss {loss.item():.3f}")

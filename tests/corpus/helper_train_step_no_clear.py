"""Text classifier (embedding bag) on AG News, with the per-batch work in a helper.

Neither the helper nor the loop clears gradients.
"""
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

from agnews import build_vocab, collate_batch, load_split  # local module, not shown


class TextClassifier(nn.Module):
    def __init__(self, vocab_size, embed_dim, num_class):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, sparse=False)
        self.fc = nn.Linear(embed_dim, num_class)
        self.embedding.weight.data.uniform_(-0.5, 0.5)
        self.fc.weight.data.uniform_(-0.5, 0.5)
        self.fc.bias.data.zero_()

    def forward(self, text, offsets):
        return self.fc(self.embedding(text, offsets))


def train_batch(model, optimizer, criterion, label, text, offsets):
    predicted = model(text, offsets)
    loss = criterion(predicted, label)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
    optimizer.step()
    return (predicted.argmax(1) == label).sum().item(), label.size(0)


def main():
    vocab = build_vocab()
    train_iter = load_split("train")
    loader = DataLoader(train_iter, batch_size=64, shuffle=True, collate_fn=lambda b: collate_batch(b, vocab))
    model = TextClassifier(len(vocab), 64, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1.0, gamma=0.1)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(1, 11):
        model.train()
        correct, count, t0 = 0, 0, time.time()
        for idx, (label, text, offsets) in enumerate(loader):
            c, n = train_batch(model, optimizer, criterion, label, text, offsets)  # expect: GL001
            correct += c
            count += n
            if idx % 500 == 0 and idx > 0:
                print(f"| epoch {epoch:3d} | {idx:5d} batches | accuracy {correct / count:8.3f} | {time.time() - t0:5.1f}s")
        scheduler.step()


if __name__ == "__main__":
    main()

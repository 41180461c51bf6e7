"""Domain-translation GAN with several critic steps per batch. The translated batch is built
once per batch and reused by every critic step, so the fake-branch backward has to keep the
generator graph. The real-branch graph is rebuilt at every step and never walked again."""
import torch
import torch.nn as nn

from translation import Critic, Translator, paired_batches  # local module, not shown


class Trainer:
    def __init__(self, dim=300, critic_steps=3, device="cuda"):
        self.device = device
        self.critic_steps = critic_steps
        self.g = Translator(dim).to(device)
        self.d = Critic(dim).to(device)
        self.g_opt = torch.optim.Adam(self.g.parameters(), lr=1e-4)
        self.d_opt = torch.optim.Adam(self.d.parameters(), lr=1e-4)
        self.bce = nn.BCEWithLogitsLoss()

    def fit(self, epochs=20, batch_size=64):
        for epoch in range(epochs):
            for src, tgt in paired_batches(batch_size):
                src, tgt = src.to(self.device), tgt.to(self.device)
                translated = self.g(src)
                ones = torch.ones(src.size(0), 1, device=self.device)
                zeros = torch.zeros(src.size(0), 1, device=self.device)
                for _ in range(self.critic_steps):
                    self.d_opt.zero_grad()
                    real_loss = self.bce(self.d(tgt), ones)
                    real_loss.backward(retain_graph=True)  # expect: GL002
                    fake_loss = self.bce(self.d(translated), zeros)
                    fake_loss.backward(retain_graph=True)
                    self.d_opt.step()

                self.g_opt.zero_grad()
                g_loss = self.bce(self.d(translated), ones) + nn.functional.l1_loss(translated, tgt)
                g_loss.backward()
                self.g_opt.step()
            print(f"epoch {epoch}: d {real_loss.item() + fake_loss.item():.3f} g {g_loss.item():.3f}")

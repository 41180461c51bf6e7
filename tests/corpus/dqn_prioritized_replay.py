"""DQN with prioritized experience replay. The TD errors are kept per sample to update the
priorities and weighted by importance-sampling weights; the batch mean is missing."""
import random

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from per_buffer import PrioritizedReplay  # local module, not shown

env = gym.make("CartPole-v1")
q_net = nn.Sequential(nn.Linear(4, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
target_net = nn.Sequential(nn.Linear(4, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
target_net.load_state_dict(q_net.state_dict())
optimizer = torch.optim.Adam(q_net.parameters(), lr=5e-4)
buffer = PrioritizedReplay(50_000, alpha=0.6)
eps, gamma, beta = 1.0, 0.99, 0.4
state, _ = env.reset()

for step in range(100_000):
    if random.random() < eps:
        action = env.action_space.sample()
    else:
        with torch.no_grad():
            action = q_net(torch.as_tensor(state, dtype=torch.float32)).argmax().item()
    nxt, reward, term, trunc, _ = env.step(action)
    buffer.add(state, action, reward, nxt, term)
    state = nxt if not (term or trunc) else env.reset()[0]
    eps = max(0.05, eps * 0.9995)
    beta = min(1.0, beta + 1e-5)

    if len(buffer) >= 1000:
        s, a, r, s2, d, weights, idx = buffer.sample(64, beta)
        q = q_net(s).gather(1, a.unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            target = r + gamma * (1 - d) * target_net(s2).max(1).values
        td = F.smooth_l1_loss(q, target, reduction="none")
        buffer.update_priorities(idx, td.detach().abs().cpu().numpy() + 1e-6)
        loss = weights * td
        optimizer.zero_grad()
        loss.backward()  # expect: GL003
        nn.utils.clip_grad_norm_(q_net.parameters(), 10)
        optimizer.step()
    if step % 1000 == 0:
        target_net.load_state_dict(q_net.state_dict())
print(np.mean(buffer.priorities[: len(buffer)]))

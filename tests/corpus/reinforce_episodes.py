"""REINFORCE with a baseline; the policy is updated every `batch_episodes` episodes, with
the gradients of the episodes in between accumulated on purpose."""
import gymnasium as gym
import torch
import torch.nn as nn
from torch.distributions import Categorical

env = gym.make("LunarLander-v2")
policy = nn.Sequential(nn.Linear(8, 128), nn.ReLU(), nn.Linear(128, 4))
optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
gamma, batch_episodes = 0.99, 8
baseline = 0.0
optimizer.zero_grad()

for episode in range(1, 5001):
    state, _ = env.reset()
    log_probs, rewards = [], []
    done = False
    while not done:
        dist = Categorical(logits=policy(torch.as_tensor(state, dtype=torch.float32)))
        action = dist.sample()
        state, reward, terminated, truncated, _ = env.step(action.item())
        log_probs.append(dist.log_prob(action))
        rewards.append(reward)
        done = terminated or truncated

    returns, g = [], 0.0
    for r in reversed(rewards):
        g = r + gamma * g
        returns.insert(0, g)
    returns = torch.tensor(returns)
    baseline = 0.95 * baseline + 0.05 * returns.mean().item()
    loss = -(torch.stack(log_probs) * (returns - baseline)).sum() / batch_episodes
    loss.backward()

    if episode % batch_episodes == 0:
        nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
        optimizer.step()
        optimizer.zero_grad()
    if episode % 100 == 0:
        print(f"episode {episode}: return {sum(rewards):.1f}")
env.close()

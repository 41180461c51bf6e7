"""Advantage actor-critic on CartPole with a shared trunk.

Bug: no zero_grad anywhere, the policy gradient of every episode is summed into the next update.
"""
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Categorical

GAMMA = 0.99


class ActorCritic(nn.Module):
    def __init__(self, obs_dim, n_actions, hidden=128):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU())
        self.pi = nn.Linear(hidden, n_actions)
        self.v = nn.Linear(hidden, 1)

    def forward(self, obs):
        h = self.trunk(obs)
        return F.softmax(self.pi(h), dim=-1), self.v(h)


def discounted_returns(rewards, gamma=GAMMA):
    out, running = [], 0.0
    for r in reversed(rewards):
        running = r + gamma * running
        out.insert(0, running)
    ret = torch.tensor(out)
    return (ret - ret.mean()) / (ret.std() + 1e-8)


env = gym.make("CartPole-v1")
net = ActorCritic(env.observation_space.shape[0], env.action_space.n)
optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
running_reward = 10.0

for episode in range(1, 2001):
    obs, _ = env.reset(seed=episode)
    log_probs, values, rewards = [], [], []
    for t in range(500):
        probs, value = net(torch.from_numpy(obs).float())
        dist = Categorical(probs)
        action = dist.sample()
        obs, reward, terminated, truncated, _ = env.step(action.item())
        log_probs.append(dist.log_prob(action))
        values.append(value.squeeze(-1))
        rewards.append(reward)
        if terminated or truncated:
            break

    returns = discounted_returns(rewards)
    values_t = torch.stack(values)
    advantage = returns - values_t.detach()
    actor_loss = -(torch.stack(log_probs) * advantage).sum()
    critic_loss = F.smooth_l1_loss(values_t, returns)
    loss = actor_loss + critic_loss
    loss.backward()  # expect: GL001
    optimizer.step()

    running_reward = 0.05 * sum(rewards) + 0.95 * running_reward
    if episode % 10 == 0:
        print(f"episode {episode}\tlast {sum(rewards):.0f}\trunning {running_reward:.1f}")
    if running_reward > env.spec.reward_threshold:
        print("solved")
        break

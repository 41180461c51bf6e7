"""Actor-critic with separate actor and critic networks and optimizers (continuous control).

The actor loss uses a detached advantage, so it only reaches the actor; the critic
optimizer is never cleared, so every critic backward adds onto gradients its last step used.
"""
import gymnasium as gym
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Normal

env = gym.make("Pendulum-v1")
obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]


class Actor(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh())
        self.mu = nn.Linear(64, act_dim)
        self.log_std = nn.Parameter(torch.full((act_dim,), -0.5))

    def forward(self, s):
        return Normal(2.0 * torch.tanh(self.mu(self.body(s))), self.log_std.exp())


actor = Actor()
critic = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 1))
actor_opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
critic_opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
gamma = 0.99

for episode in range(3000):
    s, _ = env.reset()
    ep_ret = 0.0
    for t in range(200):
        s_t = torch.as_tensor(s, dtype=torch.float32)
        dist = actor(s_t)
        a = dist.sample()
        s2, r, term, trunc, _ = env.step(a.numpy())
        ep_ret += r
        s2_t = torch.as_tensor(s2, dtype=torch.float32)
        with torch.no_grad():
            target = r / 10.0 + gamma * critic(s2_t) * (0.0 if term else 1.0)
        value = critic(s_t)
        critic_loss = F.mse_loss(value, target)
        critic_loss.backward()  # expect: GL001
        critic_opt.step()

        advantage = (target - value).detach()
        actor_loss = -(dist.log_prob(a).sum() * advantage).sum()
        actor_opt.zero_grad()
        actor_loss.backward()
        actor_opt.step()
        s = s2
        if term or trunc:
            break
    if episode % 50 == 0:
        print(f"episode {episode}: return {ep_ret:.1f}")

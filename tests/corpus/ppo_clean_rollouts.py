"""PPO with vectorised environments: rollout collection with env.step, GAE, minibatch epochs."""
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from torch.distributions import Categorical

NUM_ENVS, NUM_STEPS, GAMMA, LAM, CLIP = 8, 128, 0.99, 0.95, 0.2


def layer(i, o, std=np.sqrt(2)):
    lin = nn.Linear(i, o)
    nn.init.orthogonal_(lin.weight, std)
    nn.init.constant_(lin.bias, 0.0)
    return lin


class Agent(nn.Module):
    def __init__(self, obs_dim, n_act):
        super().__init__()
        self.v = nn.Sequential(layer(obs_dim, 64), nn.Tanh(), layer(64, 64), nn.Tanh(), layer(64, 1, 1.0))
        self.pi = nn.Sequential(layer(obs_dim, 64), nn.Tanh(), layer(64, 64), nn.Tanh(), layer(64, n_act, 0.01))

    def get(self, x, action=None):
        dist = Categorical(logits=self.pi(x))
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.v(x).squeeze(-1)


envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(NUM_ENVS)])
agent = Agent(envs.single_observation_space.shape[0], envs.single_action_space.n)
optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=1e-5)
obs_buf = torch.zeros(NUM_STEPS, NUM_ENVS, envs.single_observation_space.shape[0])
act_buf = torch.zeros(NUM_STEPS, NUM_ENVS, dtype=torch.long)
logp_buf, rew_buf, done_buf, val_buf = (torch.zeros(NUM_STEPS, NUM_ENVS) for _ in range(4))

next_obs, _ = envs.reset(seed=1)
next_obs = torch.tensor(next_obs, dtype=torch.float32)
next_done = torch.zeros(NUM_ENVS)
for update in range(1, 501):
    frac = 1.0 - (update - 1.0) / 500
    optimizer.param_groups[0]["lr"] = frac * 2.5e-4
    for step in range(NUM_STEPS):
        obs_buf[step], done_buf[step] = next_obs, next_done
        with torch.no_grad():
            action, logp, _, value = agent.get(next_obs)
        act_buf[step], logp_buf[step], val_buf[step] = action, logp, value
        next_obs, reward, term, trunc, _ = envs.step(action.numpy())
        rew_buf[step] = torch.tensor(reward)
        next_obs = torch.tensor(next_obs, dtype=torch.float32)
        next_done = torch.tensor(np.logical_or(term, trunc), dtype=torch.float32)

    with torch.no_grad():
        next_value = agent.get(next_obs)[3]
        adv = torch.zeros_like(rew_buf)
        last = 0
        for t in reversed(range(NUM_STEPS)):
            nv = next_value if t == NUM_STEPS - 1 else val_buf[t + 1]
            nd = next_done if t == NUM_STEPS - 1 else done_buf[t + 1]
            delta = rew_buf[t] + GAMMA * nv * (1 - nd) - val_buf[t]
            adv[t] = last = delta + GAMMA * LAM * (1 - nd) * last
        returns = adv + val_buf

    b_obs, b_act = obs_buf.reshape(-1, obs_buf.shape[-1]), act_buf.reshape(-1)
    b_logp, b_adv, b_ret = logp_buf.reshape(-1), adv.reshape(-1), returns.reshape(-1)
    inds = np.arange(NUM_STEPS * NUM_ENVS)
    for epoch in range(4):
        np.random.shuffle(inds)
        for start in range(0, len(inds), 256):
            mb = inds[start:start + 256]
            _, new_logp, ent, new_v = agent.get(b_obs[mb], b_act[mb])
            ratio = (new_logp - b_logp[mb]).exp()
            mb_adv = (b_adv[mb] - b_adv[mb].mean()) / (b_adv[mb].std() + 1e-8)
            pg = torch.max(-mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - CLIP, 1 + CLIP)).mean()
            v_loss = 0.5 * ((new_v - b_ret[mb]) ** 2).mean()
            loss = pg - 0.01 * ent.mean() + 0.5 * v_loss
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
            optimizer.step()
envs.close()

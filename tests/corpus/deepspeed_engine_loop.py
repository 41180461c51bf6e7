"""Pre-training loop with a DeepSpeed engine: the engine owns the optimizer and clears the
gradients inside engine.step() (gradient accumulation is configured in the JSON)."""
import argparse

import deepspeed
import torch

from gpt_model import GPT, GPTConfig  # local module, not shown
from shards import ShardedTokens  # local module, not shown


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--local_rank", type=int, default=-1)
    parser = deepspeed.add_config_arguments(parser)
    args = parser.parse_args()

    model = GPT(GPTConfig(n_layer=24, n_head=16, n_embd=1024))
    dataset = ShardedTokens("data/train", block_size=1024)
    model_engine, optimizer, loader, _ = deepspeed.initialize(args=args, model=model,
                                                              model_parameters=model.parameters(),
                                                              training_data=dataset)
    for epoch in range(1):
        for step, (x, y) in enumerate(loader):
            x = x.to(model_engine.local_rank)
            y = y.to(model_engine.local_rank)
            _, loss = model_engine(x, y)
            model_engine.backward(loss)
            model_engine.step()
            if model_engine.is_gradient_accumulation_boundary() and step % 100 == 0:
                print(f"step {step} loss {loss.item():.4f}")
            if step % 5000 == 0 and step > 0:
                model_engine.save_checkpoint("ckpt", tag=f"step{step}")


if __name__ == "__main__":
    main()

"""A loop that never clears its gradients (GL001), with switches for the CLI tests."""
import argparse
import os
import sys

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--clear", action="store_true", help="clear the gradients (a correct loop)")
parser.add_argument("--select", default=None, help="an option gradlint also has: must reach the script")
parser.add_argument("--exit", type=int, default=None, help="end with SystemExit(N)")
parser.add_argument("--fail", action="store_true", help="raise after training")
parser.add_argument("--interrupt", action="store_true", help="raise KeyboardInterrupt after training")
parser.add_argument("--hard-exit", type=int, default=None, help="end with os._exit(N), skipping shutdown")
parser.add_argument("--fork-child", action="store_true", help="fork a child that leaves with os._exit(0) first")
args = parser.parse_args()

print(f"argv={sys.argv[1:]} main={__name__} path0={sys.path[0]}")
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(4):
    if args.clear:
        optimizer.zero_grad()
    loss = model(torch.randn(8, 4)).pow(2).mean()
    loss.backward()
    optimizer.step()

if args.fork_child:
    child = os.fork()
    if child == 0:
        os._exit(0)  # a worker process leaving as workers do: the parent's run goes on
    os.waitpid(child, 0)
if args.fail:
    raise ValueError("boom after training")
if args.interrupt:
    raise KeyboardInterrupt
if args.exit is not None:
    sys.exit(args.exit)
if args.hard_exit is not None:
    sys.stdout.flush()
    os._exit(args.hard_exit)

"""What an object in training code is, from how it is named: optimizer, scheduler, GradScaler,
DeepSpeed engine or something else (EMA/SWA helpers, RL environments).

`name_kind` is the fallback when the module does not show how an object was built (see
`gradlint.analysis.facts`, which classifies by construction first). Also the libraries whose
functions are not the project's own helpers.
"""

from __future__ import annotations

import re
from typing import Optional

# Kinds of objects whose methods matter.
OPTIMIZER = "optimizer"
SCHEDULER = "scheduler"
SCALER = "scaler"
ENGINE = "engine"  # DeepSpeed engine: engine.step() steps *and* clears
OTHER = "other"  # EMA/SWA helpers, environments, anything known not to be an optimizer

KNOWN_OPTIMIZERS = frozenset(
    """SGD Adam AdamW Adamax Adagrad Adadelta RMSprop Rprop ASGD NAdam RAdam LBFGS SparseAdam Adafactor
    Lion LAMB Lamb FusedAdam FusedLAMB FusedSGD DeepSpeedCPUAdam AdamW8bit Adam8bit PagedAdamW
    PagedAdamW8bit SGDW AdaBelief Ranger Shampoo Muon SophiaG Prodigy DAdaptAdam Novograd Adan
    ZeroRedundancyOptimizer""".split()
)
_SCHEDULER_FACTORIES = re.compile(
    r"(^|\.)(get_\w*schedul\w*|\w*Scheduler\w*|\w*LR|LambdaLR|OneCycleLR|"
    r"ReduceLROnPlateau|SequentialLR|ChainedScheduler|SWALR)$"
)
_SCALER_FACTORIES = re.compile(r"(^|\.)(GradScaler|ShardedGradScaler|LossScaler\w*)$")
_OTHER_FACTORIES = re.compile(
    r"(^|\.)(\w*EMA\w*|\w*Ema\w*|ExponentialMovingAverage|AveragedModel|make|"
    r"make_env|make_vec_env|SyncVectorEnv|AsyncVectorEnv)$"
)
# opt, optim, optimizer, optG, opt_d, optimizer2, g_optim, d_opt, generator_optimizer, OPTIMIZER
_OPTIMIZER_NAME = re.compile(
    r"^(opt|optim|optimi[sz]er|OPT|OPTIM|OPTIMI[SZ]ER)([_0-9].*|[A-Z].*)?$|_(opt|optim)$|optimi[sz]er|Optimi[sz]er"
    r"|OPTIMI[SZ]ER|_OPT$|_OPTIM$"
)
# Lower-cased name fragments that say "not an optimizer", checked before the optimizer pattern.
_NOT_OPTIMIZER_HINTS = (
    ("sched", SCHEDULER),
    ("lr_", SCHEDULER),
    ("warmup", SCHEDULER),
    ("scaler", SCALER),
    ("engine", ENGINE),
    ("ema", OTHER),
    ("swa", OTHER),
    ("averag", OTHER),
    ("env", OTHER),
)
# Top-level packages whose functions are not the project's own helpers.
KNOWN_LIBRARIES = frozenset(
    """torch torchvision torchaudio torchtext numpy np scipy sklearn pandas pd matplotlib plt PIL cv2
    tqdm wandb mlflow tensorboard tensorboardX logging os sys math random time json yaml re copy
    collections itertools functools typing dataclasses pathlib argparse pickle datetime warnings
    contextlib shutil glob transformers accelerate lightning pytorch_lightning deepspeed apex timm
    einops datasets evaluate gym gymnasium hydra omegaconf rich click fairscale peft diffusers
    huggingface_hub safetensors jax flax optax tensorflow keras torch_optimizer bitsandbytes bnb
    lion_pytorch adabelief_pytorch ranger schedulefree prodigyopt dadaptation muon torch_xla
    horovod hvd torchmetrics torch_geometric dgl mmcv mmengine ignite""".split()
)


def last_part(text: str) -> str:
    return text.rsplit(".", 1)[-1]


def norm(text: str) -> str:
    """Expression text without whitespace, so `( i + 1 )` and `(i+1)` compare equal."""
    return re.sub(r"\s+", "", text)


def name_kind(text: str) -> Optional[str]:
    """What an object's name says it is, or None when the name says nothing."""
    base = last_part(text)
    lower = base.lower()
    if _OPTIMIZER_NAME.search(base) and not any(h in lower for h, _ in _NOT_OPTIMIZER_HINTS[:2]):
        return OPTIMIZER
    for hint, kind in _NOT_OPTIMIZER_HINTS:
        if hint in lower:
            return kind
    return None


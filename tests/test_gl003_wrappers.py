"""GL003 on DataParallel gathers that reach the backward through less direct code (issue 10):

- a trainer base class found through star imports (`from .runner import *` in a package
  `__init__`, or `from pkg.runner import *` in the trainer's own file), whose wrap in
  `DataParallel` the subclass's training loop inherits;
- a gather on one branch of an `if` only (the model computes the loss itself on one path, a
  criterion of unknown shape on the other): the gathered path still fails on several GPUs;
- library wrappers that return a `DataParallel` (audiotools' `Accelerator.prepare_model`), and
  the ones that do not (HF accelerate's `Accelerator.prepare`/`prepare_model`, which use DDP).

Each flagged case has clean twins. Lines that must be reported end with `# GL003`; every
other line must stay clean. All code here is written for these tests.
"""

from __future__ import annotations

import pytest

from harness import lint_project, marked_lines


# ---------------------------------------------------------------- star imports, one-branch gathers

PACKAGE_INIT = """
    from .hooks import *
    from .runner import *
"""
HOOKS = """
    def warmup(steps):
        return min(1.0, steps / 100)
"""
RUNNER_DP = """
    import torch

    class Runner:
        def __init__(self, net, crit, gpus):
            self.crit = crit
            self.net = net.cuda()
            if len(gpus) > 1:
                self.net = torch.nn.DataParallel(self.net, device_ids=gpus)
"""
RUNNER_DDP = RUNNER_DP.replace("torch.nn.DataParallel(self.net, device_ids=gpus)",
                               "torch.nn.parallel.DistributedDataParallel(self.net)")
RUNNER_SINGLE = RUNNER_DP.replace("torch.nn.DataParallel(self.net, device_ids=gpus)", "self.net.cuda()")

# The subclass imports the base by name from the package; the package re-exports it by star.
FIT_FROM_PACKAGE = """
    from core import Runner

    class Fitter(Runner):
        def epoch(self):
            for x, y in self.train_loader:
                self.opt.zero_grad()
                if self.net_takes_labels:
                    pred, loss = self.net(x, labels=y)
                else:
                    pred = self.net(x)
                    loss = self.crit(pred, y)
                loss.backward()  # GL003
                self.opt.step()
"""
# The subclass's own file star-imports the module that defines the base.
FIT_STAR = """
    from core.runner import *

    class Fitter(Runner):
        def epoch(self, scaler):
            for step, (x, y) in enumerate(self.train_loader):
                if self.joint:
                    out = self.net(x, y)
                    scores, loss = out
                else:
                    scores = self.net(x)
                    loss = self.crit(scores, y)
                if self.amp:
                    scaler.scale(loss).backward()  # GL003
                else:
                    loss.backward()  # GL003
"""


def _package(runner: str, fit: str) -> dict:
    return {"core/__init__.py": PACKAGE_INIT, "core/hooks.py": HOOKS, "core/runner.py": runner, "engine/fit.py": fit}


FLAGGED = {
    "base_reexported_by_star_gather_on_one_branch": _package(RUNNER_DP, FIT_FROM_PACKAGE),
    "base_star_imported_in_trainer_file": _package(RUNNER_DP, FIT_STAR),
    # one file: a model that returns (scores, loss) on one path, a custom criterion on the other
    "single_file_gather_on_one_branch": {
        "engine/fit.py": """
        import torch
        import torch.nn as nn

        model = build_model(cfg)
        if torch.cuda.device_count() > 1:
            model = nn.DataParallel(model)
        for images, labels in train_loader:
            if cfg.model_computes_loss:
                _, loss = model(images, labels)
            else:
                loss = criterion(model(images), labels)
            optimizer.zero_grad()
            loss.backward()  # GL003
            optimizer.step()
        """
    },
}

# A project subclass of DataParallel re-exported by star, wrapping a model built elsewhere.
PARALLEL_UTILS = {
    "utils/__init__.py": """
        from .parallel import *
    """,
    "utils/parallel.py": """
        import torch.nn as nn

        class BalancedParallel(nn.DataParallel):
            def scatter(self, inputs, kwargs, device_ids):
                return super().scatter(inputs, kwargs, device_ids)

        class MultiGPU(nn.DataParallel):
            pass

        class SyncedReplicas(nn.parallel.DistributedDataParallel):
            pass
    """,
}
WRAP_UNDER_IF = """
    import torch
    from utils import *

    model = build_model(cfg)
    if torch.cuda.device_count() > 1:
        model = BalancedParallel(model)
    for images, targets in train_loader:
        loss = model(images, targets)
        loss.backward()  # GL003
"""
WRAP_PLAIN_NAME = """
    from utils import MultiGPU

    model = MultiGPU(build_model(cfg))
    for images, targets in train_loader:
        loss = model(images, targets)
        loss.backward()  # GL003
"""

FLAGGED.update({
    # `from core import *` in the trainer's file, `from .runner import *` in core/__init__
    "base_through_two_star_imports": _package(RUNNER_DP, FIT_FROM_PACKAGE.replace("from core import Runner",
                                                                                  "from core import *")),
    "parallel_subclass_star_imported_under_if": dict(PARALLEL_UTILS, **{"engine/fit.py": WRAP_UNDER_IF}),
    "parallel_subclass_without_parallel_in_name": dict(PARALLEL_UTILS, **{"engine/fit.py": WRAP_PLAIN_NAME}),
})

CLEAN = {
    "distributed_subclass_star_imported": dict(
        PARALLEL_UTILS,
        **{"engine/fit.py": WRAP_UNDER_IF.replace("BalancedParallel", "SyncedReplicas").replace("  # GL003", "")},
    ),
    # the gathered branch reduces what came back
    "gathered_branch_reduced": _package(
        RUNNER_DP, FIT_FROM_PACKAGE.replace("labels=y)\n", "labels=y)\n                    loss = loss.mean()\n")
    ),
    # reduced after the if, for several GPUs
    "reduced_after_the_if": _package(
        RUNNER_DP,
        FIT_FROM_PACKAGE.replace(
            "                loss.backward()  # GL003",
            "                if torch.cuda.device_count() > 1:\n"
            "                    loss = loss.mean()\n"
            "                loss.backward()",
        ).replace("from core import Runner", "import torch\n    from core import Runner"),
    ),
    "base_uses_ddp": _package(RUNNER_DDP, FIT_FROM_PACKAGE.replace("  # GL003", "")),
    "base_never_wraps": _package(RUNNER_SINGLE, FIT_STAR.replace("  # GL003", "")),
    # the other branch is a known scalar: a reduction on one path, the gather on the other
    "other_branch_scalar": {
        "engine/fit.py": """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        model = build_model(cfg)
        if torch.cuda.device_count() > 1:
            model = nn.DataParallel(model)
        for images, labels in train_loader:
            if torch.cuda.device_count() > 1:
                loss = model(images, labels).mean()
            else:
                loss = F.cross_entropy(model(images), labels)
            loss.backward()
        """
    },
    # a lower-case name that a star-imported module defines, but here a parameter: not resolved
    "parameter_named_like_a_starred_function": {
        "core/losses.py": """
            import torch.nn.functional as F

            def criterion(pred, target):
                return F.mse_loss(pred, target, reduction="none")
        """,
        "engine/fit.py": """
        from core.losses import *

        def fit(net, criterion, loader):
            for x, y in loader:
                loss = criterion(net(x), y)
                loss.backward()
        """,
    },
}


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_flagged(tmp_path, name):
    source, found = lint_project(tmp_path, FLAGGED[name], "engine/fit.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")
    assert found and all("fails on more than one GPU" in f.message for f in found)


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean(tmp_path, name):
    _, found = lint_project(tmp_path, CLEAN[name], "engine/fit.py", "GL003")
    assert [(f.line, f.message) for f in found] == []


def test_later_star_import_wins(tmp_path):
    """Two star-imported modules define the base: the later import is the one Python binds."""
    files = _package(RUNNER_DP, FIT_STAR.replace("from core.runner import *", "from core.runner import *\n"
                                                 "    from core.plain import *"))
    files["core/plain.py"] = RUNNER_SINGLE
    _, found = lint_project(tmp_path, files, "engine/fit.py", "GL003")
    assert found == []
    files = _package(RUNNER_DP, FIT_STAR.replace("from core.runner import *", "from core.plain import *\n"
                                                 "    from core.runner import *"))
    files["core/plain.py"] = RUNNER_SINGLE
    source, found = lint_project(tmp_path, files, "engine/fit.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")


# ---------------------------------------------------------------- library preparers

# A codec whose forward returns its reconstruction and a 0-dim commitment loss in a dict.
CODEC = """
    import torch.nn as nn
    import torch.nn.functional as F

    class Codec(nn.Module):
        def forward(self, x):
            z = self.encoder(x)
            q = self.quantizer(z)
            return {"recon": self.decoder(q), "commit": F.mse_loss(z, q.detach())}
"""

LIBRARY_FLAGGED = {
    # an annotated parameter types the preparer; the wrap happens in another function
    "audiotools_annotated_parameter": CODEC
    + """
    from audiotools import ml

    def build(accel: ml.Accelerator):
        codec = Codec()
        return accel.prepare_model(codec)

    def train(accel: ml.Accelerator, loader):
        codec = build(accel)
        for batch in loader:
            out = codec(batch["audio"])
            loss = F.l1_loss(out["recon"], batch["audio"]) + 0.25 * out["commit"]
            accel.backward(loss)  # GL003
    """,
    # constructed at module level, imported from the submodule, the loss unpacked from a tuple
    "audiotools_constructed": """
    import torch.nn as nn
    import torch.nn.functional as F
    from audiotools.ml.accelerator import Accelerator

    class Denoiser(nn.Module):
        def forward(self, noisy, clean):
            pred = self.net(noisy)
            return pred, F.mse_loss(pred, clean)

    accel = Accelerator()
    model = accel.prepare_model(Denoiser())
    for noisy, clean in train_loader:
        _, loss = model(noisy, clean)
        loss.backward()  # GL003
    """,
}

LIBRARY_CLEAN = {
    "audiotools_reduced": LIBRARY_FLAGGED["audiotools_annotated_parameter"].replace(
        '0.25 * out["commit"]', '0.25 * out["commit"].mean()').replace("  # GL003", ""),
    # the wrapped module is an encoder; the loss is computed outside the wrap
    "audiotools_wrapped_encoder": """
    import torch.nn as nn
    import torch.nn.functional as F
    from audiotools import ml

    accel = ml.Accelerator()
    encoder = accel.prepare_model(nn.Linear(16, 8))
    for x, y in train_loader:
        loss = F.cross_entropy(head(encoder(x)), y)
        accel.backward(loss)
    """,
    # HF accelerate wraps in DistributedDataParallel: nothing is gathered
    "accelerate_prepare": """
    import torch.nn as nn
    import torch.nn.functional as F
    from accelerate import Accelerator

    class Classifier(nn.Module):
        def forward(self, x, y):
            return F.cross_entropy(self.body(x), y)

    accelerator = Accelerator()
    model, optimizer, train_loader = accelerator.prepare(Classifier(), optimizer, train_loader)
    for x, y in train_loader:
        loss = model(x, y)
        accelerator.backward(loss)
        optimizer.step()
    """,
    "accelerate_prepare_model": """
    import torch.nn as nn
    import torch.nn.functional as F
    import accelerate

    class Classifier(nn.Module):
        def forward(self, x, y):
            return F.cross_entropy(self.body(x), y)

    def fit(accelerator: accelerate.Accelerator, loader):
        model = accelerator.prepare_model(Classifier())
        for x, y in loader:
            accelerator.backward(model(x, y))
    """,
}


@pytest.mark.parametrize("name", sorted(LIBRARY_FLAGGED))
def test_library_flagged(tmp_path, name):
    source, found = lint_project(tmp_path, {"train.py": LIBRARY_FLAGGED[name]}, "train.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")
    assert found and all("fails on more than one GPU" in f.message for f in found)


@pytest.mark.parametrize("name", sorted(LIBRARY_CLEAN))
def test_library_clean(tmp_path, name):
    _, found = lint_project(tmp_path, {"train.py": LIBRARY_CLEAN[name]}, "train.py", "GL003")
    assert [(f.line, f.message) for f in found] == []


def test_accelerate_passes_the_model_through(tmp_path):
    """accelerate's prepare hands back the model: a per-sample loss it returns is still found,
    reported as per-sample, not as a gather."""
    source = """
    import torch.nn as nn
    import torch.nn.functional as F
    from accelerate import Accelerator

    class Regressor(nn.Module):
        def forward(self, x, y):
            return F.mse_loss(self.body(x), y, reduction="none").sum(1)

    accelerator = Accelerator()
    model = accelerator.prepare(Regressor())
    for x, y in train_loader:
        accelerator.backward(model(x, y))  # GL003
    """
    text, found = lint_project(tmp_path, {"train.py": source}, "train.py", "GL003")
    assert [f.line for f in found] == marked_lines(text, "GL003")
    assert "GPU" not in found[0].message and "DataParallel" not in found[0].message


def test_preparer_table_names_its_sources():
    """Every library fact says where it was read, and accelerate's never gathers."""
    from gradlint.analysis.libraries import PREPARERS

    assert all(fact.source for fact in PREPARERS)
    assert not any(fact.gathers for fact in PREPARERS if fact.package == "accelerate")


# ---------------------------------------------------------------- dicts of losses built key by key

DICT_FLAGGED = """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    codec = nn.DataParallel(Codec())
    for x, y in train_loader:
        out = model(x)
        terms = {}
        terms["rec"] = F.mse_loss(out, y, reduction="none")
        terms["reg"] = out.pow(2).mean()
        sum(terms.values()).backward()  # GL003
        (terms["rec"] + 0.1 * terms["reg"]).backward()  # GL003
        sum([terms["rec"], terms["reg"]]).backward()  # GL003
        logs = {"step": 1}
        logs["commit"] = codec(x)["commit"]
        (F.l1_loss(out, y) + logs["commit"]).backward()  # GL003
"""

def _terms_clean(source: str) -> str:
    """The variant where the `terms` backwards are no longer reported (the `logs` one still is)."""
    return "\n".join(line.replace("  # GL003", "") if "terms" in line else line for line in source.splitlines())


DICT_CLEAN = {
    "entry_reduced_later": DICT_FLAGGED.replace('        sum(terms.values()).backward()  # GL003',
                                                '        terms["rec"] = terms["rec"].mean()\n'
                                                '        sum(terms.values()).backward()'),
    "entry_overwritten_by_tuple_target": DICT_FLAGGED.replace(
        '        sum(terms.values()).backward()  # GL003',
        '        (terms["rec"], aux) = compute(out, y)\n        sum(terms.values()).backward()'),
    "entry_updated_in_place": DICT_FLAGGED.replace(
        '        sum(terms.values()).backward()  # GL003',
        '        terms["rec"] += extra(out)\n        sum(terms.values()).backward()'),
    "item_of_a_list": """
        import torch.nn.functional as F

        for x, y in train_loader:
            parts = [F.mse_loss(model(x), y, reduction="none")]
            parts[0] = parts[0].mean()
            sum(parts).backward()
    """,
}


def test_dict_flagged(tmp_path):
    source, found = lint_project(tmp_path, {"train.py": DICT_FLAGGED}, "train.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")


@pytest.mark.parametrize("name", sorted(DICT_CLEAN))
def test_dict_clean(tmp_path, name):
    source, found = lint_project(tmp_path, {"train.py": _terms_clean(DICT_CLEAN[name])}, "train.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")
    assert all("terms" not in source.splitlines()[f.line - 1] for f in found)

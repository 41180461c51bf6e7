"""GL003 on DataParallel wraps that reach the backward through a call into another module (issue 10):
a function whose callers elsewhere pass it a wrapped model, a helper elsewhere that hands back the
model it is given wrapped, a trainer whose constructor is given a wrapped model; and their clean
twins (a reduction, DDP, a wrapped encoder feeding a loss computed outside, a different function of
the same name, an unwrapped model).

Each case is a small project: files, and the file linted. Lines that must be reported carry a
`# GL003` comment; every other line must stay clean.
"""

from __future__ import annotations

import textwrap

import pytest

from harness import lint_project, marked_lines

NET = """
    import torch.nn as nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 3)

        def forward(self, x, y):
            return F.cross_entropy(self.fc(x), y)
"""

FIT = """
    def fit(model, loader, opt):
        for x, y in loader:
            opt.zero_grad()
            loss = model(x, y)
            loss.backward()  # GL003
            opt.step()
"""

MAIN_WRAPS = """
    import torch
    from nets import Net
    from engine import fit

    def main(args):
        net = Net().cuda()
        if torch.cuda.device_count() > 1:
            net = torch.nn.DataParallel(net)
        fit(net, make_loader(args), torch.optim.SGD(net.parameters(), lr=0.1))
"""

# A model whose forward returns its losses in a list when asked to (`with_loss`), other things otherwise.
TWO_HEADS = """
    import torch.nn as nn
    import torch.nn.functional as F

    class TwoHeads(nn.Module):
        def forward(self, x, y=None, with_loss=False):
            out = self.body(x)
            if with_loss:
                first = F.mse_loss(self.head_a(out), y)
            if with_loss:
                second = F.l1_loss(self.head_b(out), y)
                return out, [first, second]
            return out, self.head_a(out), self.head_b(out)
"""

DEVICES = """
    import torch

    def place(model, ids):
        device = torch.device("cuda", ids[0]) if ids else torch.device("cpu")
        if len(ids) > 1:
            model = torch.nn.DataParallel(model, device_ids=ids)
        model = model.to(device)
        return model, device
"""

FITTER = """
    class Fitter:
        def __init__(self, model, opt):
            self.model = model
            self.opt = opt

        def epoch(self, loader):
            for x, y in loader:
                self.opt.zero_grad()
                loss = self.model(x, y)
                loss.backward()  # GL003
                self.opt.step()
"""

FLAGGED = {
    # the script wraps under a GPU-count test and calls fit() of engine.py (a Python 2 file on
    # the way is skipped)
    "caller_in_script_wraps": (
        {"nets.py": NET, "engine.py": FIT, "main.py": MAIN_WRAPS,
         "legacy.py": 'from engine import fit\nprint "fit"\n'},
        "engine.py",
    ),
    # a package re-exports the step; the model is chosen by name (other names raise), wrapped with
    # device ids from the config, and asked for its list of losses
    "package_reexport_flag_and_raise": (
        {
            "heads.py": TWO_HEADS,
            "loops/__init__.py": "from .steps import run_epoch\n",
            "loops/steps.py": """
                def run_epoch(net, batches, opt):
                    for x, y in batches:
                        out, losses = net(x, y, True)
                        loss = losses[0] + 0.5 * losses[1]
                        opt.zero_grad()
                        loss.backward()  # GL003
                        opt.step()
            """,
            "run.py": """
                import torch.nn as nn
                from heads import TwoHeads
                from loops import run_epoch

                def main(cfg, batches, opt):
                    if cfg.arch == "two_heads":
                        net = TwoHeads()
                    else:
                        raise ValueError(cfg.arch)
                    net = nn.DataParallel(net, device_ids=cfg.gpus)
                    run_epoch(net, batches, opt)
            """,
        },
        "loops/steps.py",
    ),
    # the first round trains the model it was given, later rounds a fresh one wrapped at the end
    # of the previous round
    "wrapped_in_later_rounds": (
        {
            "nets.py": NET,
            "engine.py": FIT,
            "folds.py": """
                import torch
                import torch.nn as nn
                from nets import Net
                from engine import fit

                def cross_validate(model, loaders, opt, n_gpu):
                    for loader in loaders:
                        fit(model, loader, opt)
                        model = Net()
                        if n_gpu > 1:
                            model = nn.DataParallel(model)
            """,
        },
        "engine.py",
    ),
    # a helper in another module wraps the model it is given; a trainer keeps what it hands back
    "trainer_keeps_helper_wrap": (
        {
            "utils/devices.py": DEVICES,
            "trainer.py": """
                from utils.devices import place

                class Trainer:
                    def __init__(self, model, ids, opt):
                        self.model = model
                        self.ids = ids
                        self.opt = opt
                        self._setup()

                    def _setup(self):
                        self.model, self.device = place(self.model, self.ids)

                    def epoch(self, loader):
                        for x, y in loader:
                            self.opt.zero_grad()
                            loss = self.model(x.to(self.device), y.to(self.device))
                            loss.backward()  # GL003
                            self.opt.step()
            """,
        },
        "trainer.py",
    ),
    # the same helper called from a training function
    "function_uses_helper_wrap": (
        {
            "nets.py": NET,
            "utils/devices.py": DEVICES,
            "train.py": """
                from nets import Net
                from utils.devices import place

                def main(args, loader, opt):
                    model, device = place(Net(), args.gpu_ids)
                    for x, y in loader:
                        loss = model(x.to(device), y.to(device))
                        opt.zero_grad()
                        loss.backward()  # GL003
                        opt.step()
            """,
        },
        "train.py",
    ),
    # a script hands a wrapped model to a trainer's constructor, which keeps it on self
    "constructor_given_wrapped_model": (
        {
            "nets.py": NET,
            "fitter.py": FITTER,
            "main.py": """
                import torch
                from nets import Net
                from fitter import Fitter

                net = Net()
                if torch.cuda.device_count() > 1:
                    net = torch.nn.DataParallel(net)
                Fitter(model=net, opt=torch.optim.Adam(net.parameters())).epoch(loader)
            """,
        },
        "fitter.py",
    ),
}

CLEAN = {
    # the loss is reduced after the gather
    "caller_wraps_fit_reduces": (
        {"nets.py": NET, "main.py": MAIN_WRAPS, "engine.py": """
            def fit(model, loader, opt):
                for x, y in loader:
                    opt.zero_grad()
                    loss = model(x, y).mean()
                    loss.backward()
                    opt.step()
        """},
        "engine.py",
    ),
    # DistributedDataParallel does not gather
    "caller_wraps_in_ddp": (
        {"nets.py": NET, "engine.py": FIT, "main.py": """
            import torch
            from torch.nn.parallel import DistributedDataParallel
            from nets import Net
            from engine import fit

            def main(args, rank):
                net = DistributedDataParallel(Net().cuda(rank), device_ids=[rank])
                fit(net, make_loader(args), torch.optim.SGD(net.parameters(), lr=0.1))
        """},
        "engine.py",
    ),
    # the wrapped module is an encoder; the loss is computed outside it
    "wrapped_encoder_loss_outside": (
        {
            "engine.py": """
                import torch.nn.functional as F

                def fit(encoder, head, loader, opt):
                    for x, y in loader:
                        opt.zero_grad()
                        loss = F.cross_entropy(head(encoder(x)), y)
                        loss.backward()
                        opt.step()
            """,
            "main.py": """
                import torch.nn as nn
                from engine import fit

                encoder = nn.DataParallel(nn.Linear(16, 8))
                fit(encoder, nn.Linear(8, 3), loader, opt)
            """,
        },
        "engine.py",
    ),
    # the wrapped model goes to another module's function of the same name
    "same_name_other_module": (
        {
            "nets.py": NET,
            "engine.py": FIT.replace("  # GL003", ""),
            "other_engine.py": """
                def fit(model, loader, opt):
                    for x, y in loader:
                        model(x, y).mean().backward()
            """,
            "main.py": MAIN_WRAPS.replace("from engine import fit", "from other_engine import fit"),
        },
        "engine.py",
    ),
    # the losses are reduced after being combined
    "package_losses_reduced": (
        {
            "heads.py": TWO_HEADS,
            "steps.py": """
                def run_epoch(net, batches, opt):
                    for x, y in batches:
                        out, losses = net(x, y, True)
                        loss = (losses[0] + 0.5 * losses[1]).mean()
                        loss.backward()
            """,
            "run.py": """
                import torch.nn as nn
                from heads import TwoHeads
                from steps import run_epoch

                run_epoch(nn.DataParallel(TwoHeads()), batches, opt)
            """,
        },
        "steps.py",
    ),
    # the helper wraps in DDP
    "helper_wraps_in_ddp": (
        {
            "nets.py": NET,
            "utils/devices.py": """
                import torch
                from torch.nn.parallel import DistributedDataParallel as DDP

                def place(model, rank):
                    model = model.to(rank)
                    if torch.distributed.is_initialized():
                        model = DDP(model, device_ids=[rank])
                    return model, rank
            """,
            "train.py": """
                from nets import Net
                from utils.devices import place

                def main(args, loader, opt):
                    model, device = place(Net(), args.rank)
                    for x, y in loader:
                        loss = model(x.to(device), y.to(device))
                        loss.backward()
            """,
        },
        "train.py",
    ),
    # the caller reduces the gathered losses when there are several GPUs
    "helper_wrap_then_mean_on_many_gpus": (
        {
            "nets.py": NET,
            "utils/devices.py": DEVICES,
            "train.py": """
                from nets import Net
                from utils.devices import place

                def main(args, loader, opt):
                    model, device = place(Net(), args.gpu_ids)
                    for x, y in loader:
                        loss = model(x.to(device), y.to(device))
                        if len(args.gpu_ids) > 1:
                            loss = loss.mean()
                        loss.backward()
            """,
        },
        "train.py",
    ),
    # the constructor is given the plain model
    "constructor_given_plain_model": (
        {
            "nets.py": NET,
            "fitter.py": FITTER.replace("  # GL003", ""),
            "main.py": """
                import torch
                from nets import Net
                from fitter import Fitter

                net = Net().cuda()
                Fitter(model=net, opt=torch.optim.Adam(net.parameters())).epoch(loader)
            """,
        },
        "fitter.py",
    ),
}


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_flagged(tmp_path, name):
    files, main = FLAGGED[name]
    source, found = lint_project(tmp_path, files, main, "GL003")
    assert marked_lines(source, "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")
    assert all("fails on more than one GPU" in f.message for f in found)


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean(tmp_path, name):
    files, main = CLEAN[name]
    _, found = lint_project(tmp_path, files, main, "GL003")
    assert [(f.line, f.message) for f in found] == []


def test_unwrapped_callers_leave_the_function_alone(tmp_path):
    """Without the wrap in the caller, the flagged project's function is clean: the finding comes
    from the caller's wrap, not from the function's own code."""
    files, main = FLAGGED["caller_in_script_wraps"]
    files = dict(files, **{"main.py": MAIN_WRAPS.replace("net = torch.nn.DataParallel(net)", "pass")})
    _, found = lint_project(tmp_path, files, main, "GL003")
    assert found == []


def test_constant_switch_keeps_both_backwards(tmp_path):
    """Flags pick an arm only in what a call returns: a file's own `USE_AMP = False` switch does
    not hide the backward in the arm it turns off."""
    source, found = lint_project(tmp_path, {"train.py": """
        import torch.nn as nn

        USE_AMP = False
        criterion = nn.MSELoss(reduction="none")

        def step(model, x, y, scaler):
            loss = criterion(model(x), y)
            if USE_AMP:
                scaler.scale(loss).backward()  # GL003
            else:
                loss.backward()  # GL003
    """}, "train.py", "GL003")
    assert [f.line for f in found] == marked_lines(source, "GL003")


def test_cached_findings_follow_the_callers_wrap(project):
    """The finding in engine.py depends on main.py's wrap: the result cache is invalidated when
    the caller changes."""
    from gradlint.config import load_settings
    from gradlint.engine import lint_files

    def run():
        settings = load_settings(str(project.root), overrides={"select": ["GL003"]})
        return lint_files(["engine.py"], settings, jobs=1, use_cache=True)

    project.write("pyproject.toml", "[tool.gradlint]\n")
    project.write("nets.py", textwrap.dedent(NET))
    project.write("engine.py", textwrap.dedent(FIT))
    main = project.write("main.py", textwrap.dedent(MAIN_WRAPS))
    first = run()
    assert [f.code for f in first.findings] == ["GL003"]
    assert run().cache_hits == 1
    main.write_text(textwrap.dedent(MAIN_WRAPS.replace("net = torch.nn.DataParallel(net)", "pass")))
    again = run()
    assert again.cache_hits == 0 and again.findings == []

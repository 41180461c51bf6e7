"""GL001 on trainer code: a trainer's own `step()` / `backward()` methods, loops of a base class
running a subclass's methods, batch loops written as comprehensions, and epoch loops calling a
helper whose own batch loop forgets the clear.

Each case is a small project: `{path: source}`; the file to check is `train.py` unless told. A
line that must be reported ends with `# GL001`; every other line of the checked file must not be.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from gradlint.analysis import AnalysisOptions
from harness import lint_options

MARK = "# GL001"


def _write(tmp_path: Path, files: Dict[str, str]) -> None:
    for name, source in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


def _check(tmp_path: Path, files: Dict[str, str], checked: str = "train.py"):
    _write(tmp_path, files)
    for name in files:
        compile((tmp_path / name).read_text(), name, "exec")  # a case that does not parse tests nothing
    source = (tmp_path / checked).read_text()
    options = AnalysisOptions(project_root=str(tmp_path))
    return lint_options(source, str(tmp_path / checked), options, codes=["GL001"])


def _lines(findings) -> List[Tuple[str, int]]:
    return [(f.code, f.line) for f in findings]


def _marked(files: Dict[str, str], checked: str = "train.py") -> List[Tuple[str, int]]:
    text = textwrap.dedent(files[checked])
    return [("GL001", n) for n, line in enumerate(text.splitlines(), 1) if line.rstrip().endswith(MARK)]


# -- 1. a trainer method named `step` (or `backward`) is the trainer's, not an optimizer's ---------

BASE_WITH_STEP = """
    import torch
    import torch.nn.functional as F


    class BaseTrainer:
        def __init__(self, model, loader, lr=1e-3):
            self.model = model
            self.loader = loader
            self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

        def backward(self, loss):
            {clear}loss.backward(){mark}

        def {step}(self, batch):
            raise NotImplementedError

        def train(self, epochs=1):
            self.optimizer.zero_grad()
            for _ in range(epochs):
                for batch in self.loader:
                    self.{step}(batch)


    class ClassifierTrainer(BaseTrainer):
        def {step}(self, batch):
            x, y = batch
            loss = F.cross_entropy(self.model(x), y)
            self.backward(loss)
            self.optimizer.step()
"""


@pytest.mark.parametrize("step", ["step", "train_step", "run_batch"])
def test_subclass_step_method_runs_the_chain(tmp_path, step):
    files = {"train.py": BASE_WITH_STEP.format(step=step, clear="", mark="  " + MARK)}
    assert _lines(_check(tmp_path, files)) == _marked(files)


@pytest.mark.parametrize("step", ["step", "train_step"])
def test_base_backward_method_that_clears_first_is_clean(tmp_path, step):
    clear = "self.optimizer.zero_grad()\n            "
    files = {"train.py": BASE_WITH_STEP.format(step=step, clear=clear, mark="")}
    assert _check(tmp_path, files) == []


def test_trainer_step_method_in_one_class(tmp_path):
    files = {
        "train.py": """
        import torch


        class Trainer:
            def __init__(self, model):
                self.model = model
                self.opt = torch.optim.SGD(model.parameters(), lr=0.1)

            def step(self, batch):
                loss = self.model(batch).mean()
                loss.backward()
                self.opt.step()

            def fit(self, loader):
                for batch in loader:
                    self.step(batch)  # GL001
        """
    }
    assert _lines(_check(tmp_path, files)) == _marked(files)


def test_trainer_step_method_that_clears_is_clean(tmp_path):
    files = {
        "train.py": """
        import torch


        class Trainer:
            def __init__(self, model):
                self.model = model
                self.opt = torch.optim.SGD(model.parameters(), lr=0.1)

            def step(self, batch):
                self.opt.zero_grad(set_to_none=True)
                loss = self.model(batch).mean()
                loss.backward()
                self.opt.step()

            def fit(self, loader):
                for batch in loader:
                    self.step(batch)
        """
    }
    assert _check(tmp_path, files) == []


def test_optimizer_container_calling_its_own_step_is_not_a_trainer(tmp_path):
    # a class with both step() and zero_grad() is an optimizer container: `self.step()` inside it
    # steps the container, it is not a helper to follow
    files = {
        "train.py": """
        import torch


        class Optimizers:
            def __init__(self, *opts):
                self.opts = opts

            def step(self):
                for o in self.opts:
                    o.step()

            def zero_grad(self):
                for o in self.opts:
                    o.zero_grad()

            def step_and_clear(self):
                self.step()
                self.zero_grad()


        model = torch.nn.Linear(2, 2)
        optimizers = Optimizers(torch.optim.SGD(model.parameters(), lr=0.1))
        for x in loader:
            model(x).sum().backward()
            optimizers.step_and_clear()
        """
    }
    assert _check(tmp_path, files) == []


# -- 2. a base class's loop and its subclasses' methods ------------------------------------------

FAMILY = """
    import torch


    class Base:
        def __init__(self, model):
            self.model = model
            self.opt = torch.optim.SGD(model.parameters(), lr=0.1)

        def loss(self, batch):
            return self.model(batch).mean()

        def fit(self, loader):
            for batch in loader:
                self.train_step(batch){outer}


    class A(Base):
        def train_step(self, batch):
            {clear_a}self.loss(batch).backward()
            self.opt.step()


    class B(Base):
        def train_step(self, batch):
            {clear_b}self.loss(batch).backward()
            self.opt.step()
    {tail}"""
CLEAR = "self.opt.zero_grad()\n            "


def _family(clear_a: bool, clear_b: bool, tail: str = "", flagged: bool = False) -> Dict[str, str]:
    return {"train.py": FAMILY.format(
        outer="  " + MARK if flagged else "", clear_a=CLEAR if clear_a else "", clear_b=CLEAR if clear_b else "",
        tail=tail)}


def test_every_override_forgets_the_clear(tmp_path):
    files = _family(False, False, flagged=True)
    assert _lines(_check(tmp_path, files)) == _marked(files)


def test_one_override_clears_means_silence(tmp_path):
    # which subclass runs the loop is not shown: one of them is correct, so the bug does not hold
    assert _check(tmp_path, _family(True, False)) == []
    assert _check(tmp_path, _family(False, True)) == []


def test_every_override_clears_is_clean(tmp_path):
    assert _check(tmp_path, _family(True, True)) == []


def test_the_instantiated_subclass_decides(tmp_path):
    buggy = _family(True, False, tail="\n    B(torch.nn.Linear(2, 2)).fit(loader)\n", flagged=True)
    assert _lines(_check(tmp_path, buggy)) == _marked(buggy)
    correct = _family(True, False, tail="\n    A(torch.nn.Linear(2, 2)).fit(loader)\n")
    assert _check(tmp_path, correct) == []


def test_base_method_overridden_by_a_clearing_subclass_is_clean(tmp_path):
    # the base's own train_step forgets the clear, the only subclass's clears: objects of both
    # classes may run the loop, and one of them is correct
    files = {
        "train.py": """
        import torch


        class Base:
            def __init__(self, model):
                self.model = model
                self.opt = torch.optim.SGD(model.parameters(), lr=0.1)

            def train_step(self, batch):
                self.model(batch).mean().backward()
                self.opt.step()

            def fit(self, loader):
                for batch in loader:
                    self.train_step(batch)


        class Clearing(Base):
            def train_step(self, batch):
                self.opt.zero_grad()
                super().train_step(batch)
        """
    }
    assert _check(tmp_path, files) == []


# -- 3. batch loops written as comprehensions ------------------------------------------------------

MULTI_OPTIM = """
    class MultiOptimizer:
        def __init__(self, **optimizers):
            self.optimizers = optimizers

        def step(self):
            for o in self.optimizers.values():
                o.step()

        def zero_grad(self):
            for o in self.optimizers.values():
                o.zero_grad()
"""

SEG_TRAINER = """
    import torch
    import torch.nn.functional as F
    from multi_optim import MultiOptimizer


    class SegTrainer:
        def __init__(self, backbone, head, loader):
            self.backbone, self.head, self.loader = backbone, head, loader
            self.optimizer = MultiOptimizer(
                backbone=torch.optim.SGD(backbone.parameters(), lr=1e-3),
                head=torch.optim.SGD(head.parameters(), lr=1e-2),
            )

        def backward_pass(self, images, masks):
            loss = F.cross_entropy(self.head(self.backbone(images)), masks)
            loss.backward(){mark}
            return loss.item()

        def training_step(self, images, masks):
            {clear}value = self.backward_pass(images, masks)
            self.optimizer.step()
            return value

        def train_epoch(self):
            self.optimizer.zero_grad()
            losses = {loop}
            return sum(losses) / len(losses)
"""
LIST_LOOP = "[self.training_step(images, masks) for images, masks in self.loader]"
GEN_LOOP = "list(self.training_step(i, m) for i, m in self.loader if i is not None)"


@pytest.mark.parametrize("loop", [LIST_LOOP, GEN_LOOP])
def test_comprehension_batch_loop(tmp_path, loop):
    files = {"multi_optim.py": MULTI_OPTIM,
             "train.py": SEG_TRAINER.format(mark="  " + MARK, clear="", loop=loop)}
    assert _lines(_check(tmp_path, files)) == _marked(files)


@pytest.mark.parametrize("loop", [LIST_LOOP, GEN_LOOP])
def test_comprehension_batch_loop_that_clears_is_clean(tmp_path, loop):
    files = {"multi_optim.py": MULTI_OPTIM,
             "train.py": SEG_TRAINER.format(mark="", clear="self.optimizer.zero_grad()\n            ", loop=loop)}
    assert _check(tmp_path, files) == []


def test_comprehension_of_a_script(tmp_path):
    files = {
        "train.py": """
        import torch

        model = torch.nn.Linear(4, 1)
        opt = torch.optim.Adam(model.parameters())


        def update(x, y):
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            return loss.item()


        losses = [update(x, y) for x, y in loader]  # GL001
        """
    }
    assert _lines(_check(tmp_path, files)) == _marked(files)


def test_comprehensions_that_do_not_train_are_clean(tmp_path):
    files = {
        "train.py": """
        import torch

        model = torch.nn.Linear(4, 1)
        opt = torch.optim.Adam(model.parameters())


        def update(x, y):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            return loss.item()


        losses = [update(x, y) for x, y in loader]
        norms = [p.grad.norm() for p in model.parameters() if p.grad is not None]
        evals = [model(x).mean().item() for x, _ in val_loader]
        """
    }
    assert _check(tmp_path, files) == []


def test_comprehension_over_optimizers_steps_each_once(tmp_path):
    # every item brings its own model and optimizer: no optimizer steps twice in this loop
    files = {
        "train.py": """
        import torch


        def train(model, opt, x):
            model(x).mean().backward()
            opt.step()


        models = [torch.nn.Linear(2, 2) for _ in range(3)]
        opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]
        done = [train(model, opt, x) for model, opt in zip(models, opts)]
        """
    }
    assert _check(tmp_path, files) == []


# -- 4. an epoch loop calling a helper whose own batch loop forgets the clear -----------------------

TWO_MODULES = {
    "optim_utils.py": """
    def apply_gradients(loss, optimizer, max_norm=None, params=None):
        loss.backward()
        if max_norm is not None:
            import torch
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        optimizer.step()
    """,
    "engine.py": """
    import torch.nn.functional as F
    from optim_utils import apply_gradients


    def run_epoch(model, loader, optimizer):
        model.train()
        for images, labels in loader:
            loss = F.cross_entropy(model(images), labels)
            apply_gradients(loss, optimizer, max_norm=1.0, params=model.parameters())  # GL001
    """,
    "train.py": """
    import torch
    import torchvision
    from engine import run_epoch

    model = torchvision.models.resnet18(num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for epoch in range(90):
        run_epoch(model, train_loader, optimizer)
    """,
}


def test_helper_loop_is_reported_in_its_module_not_at_the_epoch_loop(tmp_path):
    for checked in ("engine.py", "train.py"):
        assert _lines(_check(tmp_path, TWO_MODULES, checked)) == _marked(TWO_MODULES, checked)


def test_epoch_loop_over_a_same_file_helper_loop_is_reported_once(tmp_path):
    files = {
        "train.py": """
        import torch


        class Trainer:
            def __init__(self, model):
                self.model = model
                self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

            def train_step(self, batch):
                loss = self.model(batch).mean()
                loss.backward()
                self.optimizer.step()

            def train_epoch(self, loader):
                for batch in loader:
                    self.train_step(batch)  # GL001

            def fit(self, loader, epochs):
                for _ in range(epochs):
                    self.train_epoch(loader)
        """
    }
    assert _lines(_check(tmp_path, files)) == _marked(files)


def test_helper_loop_that_only_the_caller_shows_wrong_gets_no_wrong_fix(tmp_path):
    # judged alone, the helper's `o` is not known as an optimizer; from the caller it is. The call
    # is reported, the message sends the clear into the helper's loop and no fix is offered
    # (a clear before the call would run once per epoch)
    files = {
        "helpers.py": """
        def run_epoch(model, loader, o):
            for x, y in loader:
                model(x).sub(y).pow(2).mean().backward()
                o.step()
        """,
        "train.py": """
        import torch
        from helpers import run_epoch

        model = torch.nn.Linear(3, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for epoch in range(5):
            run_epoch(model, loader, optimizer)  # GL001
        """,
    }
    found = _check(tmp_path, files)
    assert _lines(found) == _marked(files)
    assert found[0].fix is None
    assert "in that loop" in found[0].message


def test_epoch_loop_with_a_clearing_helper_loop_is_clean(tmp_path):
    files = dict(TWO_MODULES)
    files["optim_utils.py"] = """
    def apply_gradients(loss, optimizer, max_norm=None, params=None):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    """
    for checked in ("engine.py", "train.py"):
        assert _check(tmp_path, files, checked) == []


# -- where a trainer chain is reported -------------------------------------------------------------

def test_placement_whole_step_method_at_its_call_backward_only_method_at_the_backward(tmp_path):
    # documented convention: on the backward, or on the loop's call of a helper running it; a
    # method that runs the whole step (backward and step) is reported at its call in the loop, a
    # method that only runs the backward (the step is elsewhere) at the backward itself
    files = {
        "train.py": """
        import torch


        class WholeStep:
            def __init__(self, model):
                self.model = model
                self.optimizer = torch.optim.Adam(model.parameters())

            def training_step(self, batch):
                self.model(batch).mean().backward()
                self.optimizer.step()

            def train(self, loader, max_steps):
                it = iter(loader)
                self.optimizer.zero_grad()
                step = 0
                while step < max_steps:
                    self.training_step(next(it))  # GL001
                    step += 1


        class BackwardOnly:
            def __init__(self, model):
                self.model = model
                self.optimizer = torch.optim.Adam(model.parameters())

            def backward_pass(self, batch):
                self.model(batch).mean().backward()  # GL001

            def train(self, loader):
                self.optimizer.zero_grad()
                for batch in loader:
                    self.backward_pass(batch)
                    self.optimizer.step()
        """
    }
    assert _lines(_check(tmp_path, files)) == _marked(files)


@pytest.mark.parametrize(
    "source",
    [
        "class A(B):\n    def step(self, b):\n        self.step(b)\nclass B(A):\n    def fit(self, d):\n        for b in d:\n            self.step(b)\n",
        "class A:\n    def step(self):\n        raise NotImplementedError\n    def fit(self, d):\n        [self.step() for _ in d]\n",
        "x = [[y.backward() for y in z if (w := y)] for z in loader]\nopt.step()\n",
        "async def f():\n    return [await g(b) async for b in loader]\n",
        "class T:\n    def backward(self, loss):\n        self.backward(loss)\n    def fit(self, d):\n        for b in d:\n            self.backward(b)\n            self.opt.step()\n",
    ],
)
def test_odd_trainer_code_does_not_crash(tmp_path, source):
    found = _check(tmp_path, {"train.py": source})
    assert all(f.code == "GL001" for f in found)


BASE_MODULE = """
    class BaseTrainer:
        def forward_backward(self, batch):
            raise NotImplementedError

        def train_step(self, batch):
            self.forward_backward(batch)
            self.optimizer.step()
"""
SUBCLASS = """
    import torch
    from base import BaseTrainer


    class MyTrainer(BaseTrainer):
        def __init__(self, model):
            self.model = model
            self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

        def forward_backward(self, batch):
            {clear}loss = self.model(batch).mean()
            loss.backward()

        def fit(self, loader):
            self.optimizer.zero_grad()
            for batch in loader:
                self.train_step(batch){mark}
"""


def test_base_of_another_module_calls_the_files_override(tmp_path):
    # the base's train_step (another module) runs the whole step: reported at its call
    files = {"base.py": BASE_MODULE, "train.py": SUBCLASS.format(clear="", mark="  " + MARK)}
    found = _check(tmp_path, files)
    assert _lines(found) == _marked(files)
    assert found[0].fix is not None


def test_base_of_another_module_calls_the_files_clearing_override(tmp_path):
    files = {"base.py": BASE_MODULE,
             "train.py": SUBCLASS.format(clear="self.optimizer.zero_grad()\n            ", mark="")}
    assert _check(tmp_path, files) == []

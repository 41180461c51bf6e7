"""GL002 in trainer code: values a project function proves history-free, attributes a forward refreshes.

Each case is a small script as people write them. Lines that must be reported carry a `# GL002`
comment; every other line must stay clean. Each flagged case has a clean twin that differs in the
one fact the proof rests on.
"""

from __future__ import annotations

import textwrap

import pytest

from gradlint.analysis import AnalysisOptions
from harness import lint_options

CODES = ("GL002", "GL003")


def _lint(source: str):
    return lint_options(source, "train.py", AnalysisOptions(), codes=list(CODES))


def _marked(source: str):
    return [(n, "GL002") for n, line in enumerate(source.splitlines(), 1) if line.rstrip().endswith("# GL002")]


_CROPPING_TRAINER = """
    import random
    import torch

    class PatchGAN:
        def set_input(self, batch):
            self.src = batch["src"].to(self.device)
            self.dst = batch["dst"].to(self.device)

        def crops(self, fake, real, size):
            out_fake, out_real = [], []
            for b in range(real.size(0)):
                i = random.randint(0, real.size(2) - size)
                j = random.randint(0, real.size(3) - size)
                {fake_crop}
                out_real.append(torch.tensor(real.data[b, :, i:i + size, j:j + size]))
            return torch.stack(out_fake), torch.stack(out_real)

        def forward(self):
            self.fake = self.netG(self.src)
            self.fake_patches, self.real_patches = self.crops(self.fake, self.dst, 32)

        def backward_G(self):
            self.loss_G = self.l1(self.fake, self.dst) + self.gan(self.netD(self.fake), True)
            self.loss_G.backward(retain_graph=True){mark}

        def backward_D(self, net, real, fake):
            loss_D = self.gan(net(real), True) + self.gan(net(fake), False)
            loss_D.backward()

        def optimize_parameters(self):
            self.forward()
            self.opt_G.zero_grad()
            self.backward_G()
            self.opt_G.step()
            self.opt_D.zero_grad()
            self.backward_D(self.netD_local, self.real_patches, self.fake_patches)
            self.opt_D.step()

    def train(model, dataset, epochs: int):
        for epoch in range(epochs):
            for batch in dataset:
                model.set_input(batch)
                model.optimize_parameters()
"""

FLAGGED = {
    # The crops are copies of `.data`: the local discriminator walks nothing of G's graph.
    "trainer_crops_copied_from_data": _CROPPING_TRAINER.format(
        fake_crop="out_fake.append(torch.tensor(fake.data[b, :, i:i + size, j:j + size]))", mark="  # GL002"
    ),
    "trainer_crops_detached_in_a_loop": _CROPPING_TRAINER.format(
        fake_crop="out_fake.append(fake[b, :, i:i + size, j:j + size].detach())", mark="  # GL002"
    ),
    "script_helper_returns_values_computed_without_grad": """
        import torch
        import torch.nn.functional as F

        def pseudo_labels(teacher, images, threshold):
            with torch.no_grad():
                probs = teacher(images).softmax(dim=1)
            confidence, labels = probs.max(dim=1)
            keep = confidence > threshold
            return labels, keep

        for images, _ in loader:
            student_out = student(images)
            labels, keep = pseudo_labels(teacher, images, 0.9)
            loss = (F.cross_entropy(student_out, labels, reduction="none") * keep).mean()
            optimizer.zero_grad()
            loss.backward(retain_graph=True)  # GL002
            optimizer.step()
            penalty = helper_loss(labels, keep)
            penalty.backward()
    """,
}

CLEAN = {
    # The fake crops are slices of the generator's output: D's backward walks G's graph again.
    "trainer_crops_sliced_from_the_fake": _CROPPING_TRAINER.format(
        fake_crop="out_fake.append(fake[b, :, i:i + size, j:j + size])", mark=""
    ),
    # One path hands back the argument itself.
    "trainer_crops_returned_as_given_when_small": _CROPPING_TRAINER.format(
        fake_crop="out_fake.append(fake[b].detach())\n                if size >= real.size(2):\n"
        "                    return fake, real", mark=""
    ),
    "script_helper_returns_the_teacher_output_with_history": """
        import torch
        import torch.nn.functional as F

        def pseudo_labels(teacher, images, threshold):
            probs = teacher(images).softmax(dim=1)
            confidence, labels = probs.max(dim=1)
            keep = confidence > threshold
            return probs, keep

        for images, _ in loader:
            student_out = student(images)
            probs, keep = pseudo_labels(teacher, images, 0.9)
            loss = (F.kl_div(student_out.log_softmax(1), probs, reduction="none").sum(1) * keep).mean()
            optimizer.zero_grad()
            loss.backward(retain_graph=True)
            optimizer.step()
            penalty = helper_loss(probs, keep)
            penalty.backward()
    """,
    # The helper's name is also rebound: a call of it may reach something else.
    "script_helper_name_rebound": """
        import torch
        import torch.nn.functional as F

        def pseudo_labels(teacher, images, threshold):
            with torch.no_grad():
                probs = teacher(images).softmax(dim=1)
            return probs, probs.max(dim=1)[0] > threshold

        if use_soft_labels:
            pseudo_labels = soft_labels

        for images, _ in loader:
            student_out = student(images)
            probs, keep = pseudo_labels(teacher, images, 0.9)
            loss = (F.kl_div(student_out.log_softmax(1), probs, reduction="none").sum(1) * keep).mean()
            optimizer.zero_grad()
            loss.backward(retain_graph=True)
            optimizer.step()
            penalty = helper_loss(probs, keep)
            penalty.backward()
    """,
}


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_flagged(name):
    source = textwrap.dedent(FLAGGED[name])
    found = [(f.line, f.code) for f in _lint(source)]
    assert found == _marked(source)
    assert found, "a flagged case must mark at least one line"


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean(name):
    source = textwrap.dedent(CLEAN[name])
    assert "# GL002" not in source
    assert [(f.line, f.code) for f in _lint(source)] == []


_AUX_MODEL = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    {prelude}class Base({base}):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 1)
            self.aux_loss = {init}

        def add_aux(self, aux, weight):
            self.aux_loss = {store}

        def forward(self, x):
            return self.layer(x)

        def fit(self, loader, optimizer):
            model = {model}
            for x, y in loader:
                {before}pred = model(x)
                loss = F.mse_loss(pred, y) + self.reg() + {aux}
                optimizer.zero_grad()
                loss.backward(retain_graph=True){mark}
                optimizer.step()

        def reg(self):
            return sum(p.pow(2).sum() for p in self.parameters()) * 1e-4

    class WithAux(Base):
        def forward(self, x):
            h = self.layer(x)
            {add}
            return h
"""

_AUX_DEFAULTS = dict(
    init="torch.zeros(1)", store="aux * weight", model="self.train()", before="", aux="self.aux_loss",
    add="self.add_aux(h.pow(2).mean(), 0.1)", mark="", prelude="", base="nn.Module",
)


def _aux(**changes):
    return _AUX_MODEL.format(**{**_AUX_DEFAULTS, **changes})


FLAGGED_FORWARD_STATE = {
    # The subclass's forward sets the auxiliary loss afresh on every call; fit reads it after.
    "aux_loss_set_by_every_forward": _aux(mark="  # GL002"),
    "aux_loss_read_after_self_call": _aux(model="self", mark="  # GL002"),
    "aux_loss_assigned_in_forward": _aux(add="self.aux_loss = h.abs().mean()", mark="  # GL002"),
}

CLEAN_FORWARD_STATE = {
    # Set only in training mode: in other calls the last graph stays and the next backward walks it.
    "aux_loss_set_under_a_condition": _aux(add="if self.training:\n                self.add_aux(h.pow(2).mean(), 0.1)"),
    # Accumulated across calls: every iteration's graph is part of the next one's.
    "aux_loss_accumulated": _aux(store="self.aux_loss + aux * weight"),
    # Read before this iteration's forward: the previous iteration's graph.
    "aux_loss_read_before_the_forward": _aux(before="aux = self.aux_loss\n                ", aux="aux"),
    # A graph made once in the constructor, walked by every iteration's backward.
    "aux_loss_built_in_the_constructor": _aux(init="self.layer.weight.norm()", add="pass"),
    # The wrapper runs replicas: their forwards set the attribute on the copies.
    "aux_loss_of_a_wrapped_model": _aux(model="nn.DataParallel(self)"),
    # Something else sets it too.
    "aux_loss_set_from_outside": _aux() + """
    def attach(model, extra):
        model.aux_loss = extra
    """,
    # A base class defines its own `train()`: `model = self.train()` may not be the module.
    "aux_loss_model_from_an_overridden_train": _aux(
        base="Switchable",
        prelude="class Switchable(nn.Module):\n        def train(self, mode=True):\n"
        "            for child in self.children():\n                child.train(mode)\n\n    ",
    ),
    # A subclass may skip the forward that sets it.
    "aux_loss_forward_overridden_conditionally": _aux() + """
    class Gated(WithAux):
        def forward(self, x):
            return super().forward(x) if self.gate else self.layer(x)
    """,
}


@pytest.mark.parametrize("name", sorted(FLAGGED_FORWARD_STATE))
def test_flagged_forward_state(name):
    source = textwrap.dedent(FLAGGED_FORWARD_STATE[name])
    found = [(f.line, f.code) for f in _lint(source)]
    assert found == _marked(source)
    assert found, "a flagged case must mark at least one line"


@pytest.mark.parametrize("name", sorted(CLEAN_FORWARD_STATE))
def test_clean_forward_state(name):
    source = textwrap.dedent(CLEAN_FORWARD_STATE[name])
    assert "# GL002" not in source
    assert [(f.line, f.code) for f in _lint(source)] == []


def _project(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def _lint_file(tmp_path, name):
    path = tmp_path / name
    options = AnalysisOptions(project_root=str(tmp_path))
    return [f.line for f in lint_options(path.read_text(encoding="utf-8"), str(path), options, codes=list(CODES))]


_BASE_MODEL = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BaseModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(4, 1)
            self.aux_loss = torch.zeros((1,))

        def add_auxiliary_loss(self, aux_loss, alpha):
            self.aux_loss = aux_loss * alpha

        def fit(self, loader, optim):
            model = self.train()
            for x, y in loader:
                y_pred = model(x).squeeze()
                optim.zero_grad()
                total_loss = F.binary_cross_entropy(y_pred, y) + self.aux_loss
                total_loss.backward(retain_graph=True)
                optim.step()
"""

_SEQUENCE_MODEL = """
    from models.base import BaseModel

    class SequenceModel(BaseModel):
        def forward(self, x):
            h, aux = self.extractor(x)
            self.add_auxiliary_loss(aux, 0.5)
            return self.out(h)
"""


def test_auxiliary_loss_set_by_a_subclass_in_another_module(tmp_path):
    _project(tmp_path, {"models/__init__.py": "", "models/base.py": _BASE_MODEL, "models/sequence.py": _SEQUENCE_MODEL})
    assert _lint_file(tmp_path, "models/base.py") == [21]


def test_auxiliary_loss_also_set_by_the_training_script(tmp_path):
    _project(tmp_path, {
        "models/__init__.py": "", "models/base.py": _BASE_MODEL, "models/sequence.py": _SEQUENCE_MODEL,
        "train.py": """
            from models.sequence import SequenceModel

            model = SequenceModel()
            model.aux_loss = model.out.weight.norm()
            model.fit(loader, optim)
        """,
    })
    assert _lint_file(tmp_path, "models/base.py") == []


def test_auxiliary_loss_added_outside_a_forward(tmp_path):
    _project(tmp_path, {
        "models/__init__.py": "", "models/base.py": _BASE_MODEL, "models/sequence.py": _SEQUENCE_MODEL,
        "models/hooks.py": """
            class Regularised:
                def attach(self, model, penalty):
                    model.add_auxiliary_loss(penalty, 1.0)
        """,
    })
    assert _lint_file(tmp_path, "models/base.py") == []


_CROPPING_BASE = """
    import torch

    class BaseTrainer:
        def set_input(self, batch):
            self.src = batch["src"]
            self.dst = batch["dst"]

        def crops(self, fake, real):
            return torch.tensor(fake.data[:, :, :32, :32]), torch.tensor(real.data[:, :, :32, :32])

        def optimize_parameters(self):
            self.fake = self.netG(self.src)
            fake_crop, real_crop = self.crops(self.fake, self.dst)
            self.opt_G.zero_grad()
            loss_G = self.l1(self.fake, self.dst)
            loss_G.backward(retain_graph=True)
            self.opt_G.step()
            self.opt_D.zero_grad()
            loss_D = self.gan(self.netD(real_crop), True) + self.gan(self.netD(fake_crop), False)
            loss_D.backward()
            self.opt_D.step()

    def train(model, dataset):
        for batch in dataset:
            model.set_input(batch)
            model.optimize_parameters()
"""


def test_history_free_method_of_a_trainer(tmp_path):
    _project(tmp_path, {"trainers/__init__.py": "", "trainers/base.py": _CROPPING_BASE})
    assert _lint_file(tmp_path, "trainers/base.py") == [17]


def test_history_free_method_overridden_in_a_subclass(tmp_path):
    _project(tmp_path, {
        "trainers/__init__.py": "", "trainers/base.py": _CROPPING_BASE,
        "trainers/sliced.py": """
            from trainers.base import BaseTrainer

            class SlicedTrainer(BaseTrainer):
                def crops(self, fake, real):
                    return fake[:, :, :32, :32], real[:, :, :32, :32]
        """,
    })
    assert _lint_file(tmp_path, "trainers/base.py") == []

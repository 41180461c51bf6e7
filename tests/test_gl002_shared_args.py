"""GL002 and graphs handed to a helper: features a caller computed once and passes to several calls.

A helper `head_update(head, opt, feats, y)` whose loss reads `feats` keeps part of the caller's
graph (the encoder that made `feats`). With `retain_graph=True` removed, the first call frees the
encoder's saved tensors and the next backward through `feats` fails with "Trying to backward
through the graph a second time". The retain is needless only when no later backward of the caller
reaches that graph: every call site passes data (a loader's batch, a detached value), or the graph
is made afresh for each call. Lines that must be reported carry `# GL002`.
"""

from __future__ import annotations

import textwrap

import pytest

from gradlint.analysis import AnalysisOptions
from harness import lint_options

CODES = ["GL002", "GL003"]


def _lines(source: str, path: str = "train.py", root=None):
    options = AnalysisOptions(project_root=root)
    return [f.line for f in lint_options(textwrap.dedent(source), path, options, codes=CODES) if f.code == "GL002"]


def _marked(source: str):
    return [n for n, line in enumerate(textwrap.dedent(source).splitlines(), 1) if line.rstrip().endswith("# GL002")]


HELPER = """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F


    def head_update(head, opt, feats, target):
        opt.zero_grad()
        loss = F.cross_entropy(head(feats), target)
        loss.backward(retain_graph=True){mark}
        opt.step()


    encoder = nn.Linear(128, 64)
    cls_head, aux_head = nn.Linear(64, 10), nn.Linear(64, 4)
    opt_cls = torch.optim.SGD(list(encoder.parameters()) + list(cls_head.parameters()), lr=0.1)
    opt_aux = torch.optim.SGD(aux_head.parameters(), lr=0.1)
"""


def _script(loop: str, flagged: bool) -> str:
    return textwrap.dedent(HELPER).format(mark="  # GL002" if flagged else "") + textwrap.dedent(loop)


CLEAN = {
    # Two calls with the same features: the second backpropagates through the encoder again.
    "two_calls_same_features": """
        for x, y_cls, y_aux in loader:
            feats = encoder(x)
            head_update(cls_head, opt_cls, feats, y_cls)
            head_update(aux_head, opt_aux, feats, y_aux)
    """,
    # One call site, in a loop over heads: the next round walks the same features.
    "zip_loop_over_heads": """
        heads, opts = [cls_head, aux_head], [opt_cls, opt_aux]
        for x, y_cls, y_aux in loader:
            feats = encoder(x)
            for head, opt, target in zip(heads, opts, (y_cls, y_aux)):
                head_update(head, opt, feats, target)
    """,
    # A later backward of the caller itself reaches the features.
    "caller_backward_after_the_call": """
        for x, y_cls, y_aux in loader:
            feats = encoder(x)
            head_update(cls_head, opt_cls, feats, y_cls)
            reg = feats.pow(2).mean()
            reg.backward()
    """,
    # The features come through a projection: the shared part is still the encoder's graph.
    "shared_trunk_behind_a_projection": """
        for x, y_cls, y_aux in loader:
            trunk = encoder(x)
            head_update(cls_head, opt_cls, trunk * 2, y_cls)
            head_update(aux_head, opt_aux, trunk * 3, y_aux)
    """,
    # The same features for several steps of the same batch.
    "inner_steps_same_features": """
        for x, y_cls, y_aux in loader:
            feats = encoder(x)
            for _ in range(3):
                head_update(cls_head, opt_cls, feats, y_cls)
    """,
}

FLAGGED = {
    # Features made afresh for each call: nothing walks either graph again.
    "fresh_features_per_call": """
        for x, y_cls, y_aux in loader:
            head_update(cls_head, opt_cls, encoder(x), y_cls)
            head_update(aux_head, opt_aux, encoder(x), y_aux)
    """,
    # A single call per batch with the encoder's output.
    "one_call_per_batch": """
        for x, y_cls, y_aux in loader:
            feats = encoder(x)
            head_update(cls_head, opt_cls, feats, y_cls)
    """,
    # Detached features are data: the heads' graphs are their own.
    "detached_features": """
        for x, y_cls, y_aux in loader:
            feats = encoder(x).detach()
            head_update(cls_head, opt_cls, feats, y_cls)
            head_update(aux_head, opt_aux, feats, y_aux)
    """,
    # Features computed under no_grad are data too.
    "features_under_no_grad": """
        for x, y_cls, y_aux in loader:
            with torch.no_grad():
                feats = encoder(x)
            head_update(cls_head, opt_cls, feats, y_cls)
            head_update(aux_head, opt_aux, feats, y_aux)
    """,
    # Loader data passed straight in, twice.
    "loader_batch_twice": """
        for x, y_cls, y_aux in loader:
            head_update(cls_head, opt_cls, x, y_cls)
            head_update(aux_head, opt_aux, x, y_aux)
    """,
}


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_shared_graph_argument_keeps_the_retain(name):
    assert _lines(_script(CLEAN[name], flagged=False)) == []


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_fresh_argument_per_call_is_reported(name):
    source = _script(FLAGGED[name], flagged=True)
    assert _lines(source) == _marked(source) != []


def test_method_computing_its_graph_inside_called_from_two_sites():
    source = """
        import torch
        import torch.nn.functional as F


        class Finetuner:
            def __init__(self, model):
                self.model = model
                self.opt = torch.optim.AdamW(model.parameters())

            def update(self, inputs, labels):
                self.opt.zero_grad()
                loss = F.cross_entropy(self.model(inputs), labels)
                loss.backward(retain_graph=True)  # GL002
                self.opt.step()

            def warmup(self, loader):
                for inputs, labels in loader:
                    self.update(inputs, labels)

            def train(self, loader):
                for inputs, labels in loader:
                    self.update(inputs, labels)
    """
    assert _lines(source) == _marked(source)


def test_method_given_the_same_hidden_features_twice():
    source = """
        import torch
        import torch.nn.functional as F


        class MultiTask:
            def __init__(self, encoder, heads):
                self.encoder = encoder
                self.heads = heads
                self.opt = torch.optim.AdamW(encoder.parameters())

            def head_step(self, head, feats, target):
                self.opt.zero_grad()
                loss = F.mse_loss(head(feats), target)
                loss.backward(retain_graph=True)
                self.opt.step()

            def train(self, loader):
                for x, y1, y2 in loader:
                    feats = self.encoder(x)
                    self.head_step(self.heads[0], feats, y1)
                    self.head_step(self.heads[1], feats, y2)
    """
    assert _lines(source) == []


def test_batch_dict_moved_to_the_device_is_data():
    source = """
        def compute_and_backprop(model, batch, optimizer):
            outputs = model(input_ids=batch["input_ids"], labels=batch["labels"])
            loss = outputs.loss
            loss.backward(retain_graph=True)  # GL002
            optimizer.step()
            optimizer.zero_grad()


        def train(model, train_dataloader, optimizer):
            for batch in train_dataloader:
                batch = {k: v.to("cuda") for k, v in batch.items()}
                compute_and_backprop(model, batch, optimizer)
    """
    assert _lines(source) == _marked(source)


def test_parameter_made_a_leaf_in_the_helper_is_not_the_callers_graph():
    # `y.requires_grad = True` fails on a tensor with history: past it, `y` is a leaf.
    source = """
        import torch


        def recompute(block, y, dy):
            with torch.enable_grad():
                y.requires_grad = True
                out = block(y)
                out.backward(dy, retain_graph=True)  # GL002
            with torch.no_grad():
                x = y - out
                dx = dy + y.grad
            return x, dx


        def backward_all(blocks, y, dy):
            for block in reversed(blocks):
                y, dy = recompute(block, y, dy)
            return dy
    """
    assert _lines(source) == _marked(source)


def test_index_target_of_nll_loss_is_not_part_of_the_graph():
    # Targets made once before the loop by a function we cannot see, passed each round: no
    # gradient reaches an nll_loss target, so the rounds share no graph through it.
    source = """
        import torch
        import torch.nn.functional as F


        def attack_grad(model, x, pseudo, delta):
            out = F.log_softmax(model(x + delta), dim=1)
            loss = F.nll_loss(out, pseudo)
            return torch.autograd.grad(loss, delta, retain_graph=True)[0]  # GL002


        def attack(model, x, steps):
            delta = torch.zeros_like(x, requires_grad=True)
            pseudo = labeller(model, x)
            for _ in range(steps):
                g = attack_grad(model, x, pseudo, delta)
                delta.data += 0.01 * g.sign()
    """
    assert _lines(source) == _marked(source)


def test_cross_entropy_target_may_carry_a_graph():
    # Soft targets are differentiable: a teacher's output passed to several calls is shared.
    source = """
        import torch.nn.functional as F


        def distill_step(student, opt, x, soft):
            opt.zero_grad()
            loss = F.cross_entropy(student(x), soft)
            loss.backward(retain_graph=True)
            opt.step()


        def train(students, opts, teacher, loader):
            for x, _ in loader:
                soft = teacher(x).softmax(-1)
                for student, opt in zip(students, opts):
                    distill_step(student, opt, x, soft)
    """
    assert _lines(source) == []


# Several files: the helper lives in another module.


def _project(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def _lint_file(tmp_path, name):
    path = tmp_path / name
    return _lines(path.read_text(encoding="utf-8"), str(path), root=str(tmp_path))


STEPS = """
    import torch.nn.functional as F


    def head_update(head, opt, feats, target):
        opt.zero_grad()
        loss = F.cross_entropy(head(feats), target)
        loss.backward(retain_graph=True)
        opt.step()
"""


def test_helper_module_given_shared_features_in_a_zip_loop(tmp_path):
    _project(tmp_path, {
        "steps.py": STEPS,
        "train.py": """
            import torch
            from steps import head_update

            encoder = torch.nn.Linear(128, 64)
            heads = [torch.nn.Linear(64, 10), torch.nn.Linear(64, 4)]
            opts = [torch.optim.SGD(h.parameters(), lr=0.1) for h in heads]
            for x, y_main, y_aux in loader:
                feats = encoder(x)
                for head, opt, target in zip(heads, opts, (y_main, y_aux)):
                    head_update(head, opt, feats, target)
        """,
    })
    assert _lint_file(tmp_path, "steps.py") == []


def test_helper_module_given_fresh_features_per_call(tmp_path):
    _project(tmp_path, {
        "steps.py": STEPS,
        "train.py": """
            import torch
            from steps import head_update

            encoder = torch.nn.Linear(128, 64)
            heads = [torch.nn.Linear(64, 10), torch.nn.Linear(64, 4)]
            opts = [torch.optim.SGD(h.parameters(), lr=0.1) for h in heads]
            for x, y_main, y_aux in loader:
                for head, opt, target in zip(heads, opts, (y_main, y_aux)):
                    head_update(head, opt, encoder(x), target)
        """,
    })
    assert _lint_file(tmp_path, "steps.py") == [8]


def test_helper_module_called_by_a_function_given_shared_features(tmp_path):
    # The features reach the helper through a function of the script; that function's callers
    # pass the same features twice.
    _project(tmp_path, {
        "steps.py": STEPS,
        "train.py": """
            import torch
            from steps import head_update


            def both_heads(heads, opts, feats, targets):
                for head, opt, target in zip(heads, opts, targets):
                    head_update(head, opt, feats, target)


            encoder = torch.nn.Linear(128, 64)
            heads = [torch.nn.Linear(64, 10), torch.nn.Linear(64, 4)]
            opts = [torch.optim.SGD(h.parameters(), lr=0.1) for h in heads]
            for x, y_main, y_aux in loader:
                both_heads(heads, opts, encoder(x), (y_main, y_aux))
        """,
    })
    assert _lint_file(tmp_path, "steps.py") == []


REBOUND = """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from datasets import load_arrays


    def fit(model, opt, x, y):
        loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=32)
        for x_batch, y_batch in loader:
            x = x_batch.float()
            y = y_batch.float()
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward(retain_graph=True){mark}
            opt.step()


    def main(path):
        net = nn.Linear(8, 1)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        features, labels = load_arrays(path)
        fit(net, opt, features, labels)
        fit(net, opt, features, labels)
"""


def test_parameter_rebound_from_the_loader_before_the_backward_is_not_the_callers_graph():
    """`x` is a parameter, but the loop rebinds it to each batch before the backward: whatever the
    callers pass (here values gradlint cannot see, twice) never reaches the retained graph."""
    source = REBOUND.format(mark="  # GL002")
    assert _lines(source) == _marked(source) != []


def test_parameter_used_as_passed_still_belongs_to_the_callers_graph():
    source = REBOUND.format(mark="").replace("            x = x_batch.float()\n", "").replace(
        "model(x)", "model(x[: len(y_batch)])")
    assert "x_batch.float" not in source and _lines(source) == []


SCALED_CALLER = """
    import torch
    import torch.nn as nn

    from utils import {name}

    trunk = nn.Sequential(nn.Linear(5, 8), nn.ReLU())
    ha, hb = nn.Linear(8, 1), nn.Linear(8, 2)
    opt = torch.optim.SGD([*trunk.parameters(), *ha.parameters(), *hb.parameters()], lr=0.01)
    for it in range(4):
        f = trunk(torch.randn(6, 5))
        la = ha({first}).pow(2).mean()
        lb = nn.functional.cross_entropy(hb(f), torch.randint(0, 2, (6,)))
        opt.zero_grad()
        {name}(la, 0.5)
        lb.backward()
        opt.step()
"""

SCALED_ROOTS = {
    "product": "(loss * scale).backward(retain_graph=True)",
    "product_reversed": "(scale * loss).backward(retain_graph=True)",
    "quotient": "(loss / scale).backward(retain_graph=True)",
    "mean": "loss.mean().backward(retain_graph=True)",
    "named_first": "total = loss * scale\n        total.backward(retain_graph=True)",
}


def _scaling_helper(name, root):
    """utils.py: `def name(loss, scale=1.0)` running the backward of SCALED_ROOTS[root]."""
    body = SCALED_ROOTS[root].replace("\n        ", "\n    ")
    return f"def {name}(loss, scale=1.0):\n    {body}\n"


@pytest.mark.parametrize("root", sorted(SCALED_ROOTS))
def test_helper_named_backward_scaling_the_callers_loss_keeps_the_retain(tmp_path, root):
    """`backward` is also every tensor's method, so its call sites are not all readable: a root
    made from the parameter by tensor arithmetic holds the unseen caller's graph, like a root that
    is the parameter (silent for both)."""
    _project(tmp_path, {
        "utils.py": _scaling_helper("backward", root),
        "train.py": SCALED_CALLER.format(name="backward", first="f"),
    })
    assert _lint_file(tmp_path, "utils.py") == []


@pytest.mark.parametrize("root", sorted(SCALED_ROOTS))
def test_scaling_helper_whose_caller_walks_the_shared_trunk_again(tmp_path, root):
    _project(tmp_path, {
        "utils.py": _scaling_helper("scaled", root),
        "train.py": SCALED_CALLER.format(name="scaled", first="f"),
    })
    assert _lint_file(tmp_path, "utils.py") == []


@pytest.mark.parametrize("root", sorted(SCALED_ROOTS))
def test_scaling_helper_whose_caller_builds_a_fresh_graph_is_reported(tmp_path, root):
    _project(tmp_path, {
        "utils.py": _scaling_helper("scaled", root),
        "train.py": SCALED_CALLER.format(name="scaled", first="trunk(torch.randn(6, 5))"),
    })
    line = 3 if root == "named_first" else 2
    assert _lint_file(tmp_path, "utils.py") == [line]


def test_helper_running_its_own_head_on_the_callers_features_is_still_reported():
    """The graph is mostly the helper's own (a head it runs): with no readable call site, what the
    helper is handed is taken to be its input, as before."""
    source = """
        def backward(head, feats, scale=1.0):
            (head(feats).mean() * scale).backward(retain_graph=True)  # GL002
    """
    assert _lines(source) == _marked(source) != []

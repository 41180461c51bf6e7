"""GL003: where batches come from, batches handed to methods, and per-row torch functions
(issue 10). Each kind has inputs that must be reported and clean twins that must stay silent.

Lines that must be reported end with `# GL003`; every other line must stay clean.
"""

from __future__ import annotations

import textwrap

import pytest

from harness import lint, marked_lines

HEADER = """
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader


def per_sample(model, x, y):
    return (model(x) - y) ** 2

"""


def _check(*bodies: str) -> None:
    source = HEADER + "\n".join(textwrap.dedent(body) for body in bodies)
    found = lint(source, codes=["GL003"], dedent=False)
    assert sorted(f.line for f in found) == marked_lines(source, "GL003"), [f.message for f in found]


# ---------------------------------------------------------------------------------------------
# Batch sources: what the code shows is a data loader

SOURCES_FLAGGED = {
    "dataloader_batch_sampler": """
        def train(model, ds, sampler):
            for x, y in DataLoader(ds, batch_sampler=sampler):
                per_sample(model, x, y).backward()  # GL003
    """,
    "dataloader_batch_size_from_config": """
        def train(model, ds, cfg):
            loader = DataLoader(ds, cfg.batch_size, shuffle=True)
            for x, y in loader:
                per_sample(model, x, y).backward()  # GL003
    """,
    "parameter_named_train_dl": """
        def train(model, train_dl, opt):
            for x, y in train_dl:
                opt.zero_grad()
                loss = per_sample(model, x, y)
                loss.backward()  # GL003
                opt.step()
    """,
    "parameter_dl_enumerated": """
        def train(model, dl):
            for step, (x, y) in enumerate(dl):
                loss = per_sample(model, x, y)
                loss.backward()  # GL003
    """,
    "function_returning_dataloader": """
        def get_loader(ds):
            return DataLoader(ds, batch_size=32, shuffle=True)

        def train(model, ds):
            for x, y in get_loader(ds):
                loss = per_sample(model, x, y)
                loss.backward()  # GL003
    """,
    "method_returning_dataloader": """
        class Trainer:
            def __init__(self, model, ds):
                self.model = model
                self.ds = ds

            def batches(self):
                return DataLoader(self.ds, batch_size=16)

            def fit(self):
                for x, y in self.batches():
                    loss = per_sample(self.model, x, y)
                    loss.backward()  # GL003
    """,
    "attribute_bound_in_init": """
        class Trainer:
            def __init__(self, ds):
                self.train_data = DataLoader(ds, batch_size=8)

            def fit(self, model):
                for x, y in self.train_data:
                    loss = per_sample(model, x, y)
                    loss.backward()  # GL003
    """,
    "module_name_bound_to_dataloader": """
        batches = DataLoader(list(range(10)), batch_size=4)

        def train(model):
            for x, y in batches:
                loss = per_sample(model, x, y)
                loss.backward()  # GL003
    """,
    "accelerator_prepare_in_loader_position": """
        def train(model, opt, ds, accelerator):
            loader = DataLoader(ds, batch_size=4)
            model, opt, data = accelerator.prepare(model, opt, loader)
            for x, y in data:
                loss = per_sample(model, x, y)
                accelerator.backward(loss)  # GL003
    """,
    "known_accelerator_prepares_train_dl": """
        from accelerate import Accelerator

        def train(model, opt, train_dl):
            accelerator = Accelerator()
            model, opt, data = accelerator.prepare(model, opt, train_dl)
            for x, y in data:
                loss = per_sample(model, x, y)
                accelerator.backward(loss)  # GL003
    """,
    "next_of_iter_of_loader": """
        def train(model, ds, steps):
            it = iter(DataLoader(ds, batch_size=4))
            for _ in range(steps):
                x, y = next(it)
                loss = per_sample(model, x, y)
                loss.backward()  # GL003
    """,
    "next_iter_inline": """
        def probe(model, loader):
            x, y = next(iter(loader))
            per_sample(model, x, y).backward()  # GL003
    """,
    "function_named_like_a_loader": """
        def train(model, cfg):
            for x, y in build_loader(cfg):
                loss = per_sample(model, x, y)
                loss.backward()  # GL003
    """,
}

SOURCES_CLEAN = {
    # one sample at a time: automatic batching off, the default batch of one, batch_size=1; the
    # loader's name does not make it batch
    "dataloader_batch_size_none": """
        def train(model, ds):
            loader = DataLoader(ds, batch_size=None, shuffle=True)
            for x, y in loader:
                loss = per_sample(model, x, y)
                loss.backward()
    """,
    "dataloader_default_batch_of_one": """
        train_loader = DataLoader(ds, shuffle=True)

        def train(model):
            for x, y in train_loader:
                per_sample(model, x, y).backward()
            for x, y in iter(train_loader):
                per_sample(model, x, y).backward()
    """,
    "dataloader_positional_batch_size_one": """
        def train(model, ds):
            for x, y in DataLoader(ds, 1):
                per_sample(model, x, y).backward()
    """,
    "arbitrary_parameter_name": """
        def train(model, pairs):
            for x, y in pairs:
                loss = per_sample(model, x, y)
                loss.backward()
    """,
    "dataset_items_are_single_samples": """
        def train(model, dataset):
            for x, y in dataset:
                loss = per_sample(model, x, y)
                loss.backward()
    """,
    "loader_like_name_bound_to_a_list": """
        def train(model, dl):
            dl = [(torch.zeros(()), torch.zeros(()))]
            for x, y in dl:
                loss = per_sample(model, x, y)
                loss.backward()
    """,
    "next_of_iter_of_a_list": """
        def probe(model, samples):
            it = iter(samples)
            x, y = next(it)
            per_sample(model, x, y).backward()
    """,
    "accelerator_prepares_a_dataset": """
        def train(model, opt, dataset, accelerator):
            model, opt, data = accelerator.prepare(model, opt, dataset)
            for x, y in data:
                loss = per_sample(model, x, y)
                accelerator.backward(loss)
    """,
    "train_dl_reduced_to_a_scalar": """
        def train(model, train_dl):
            for x, y in train_dl:
                loss = per_sample(model, x, y).mean()
                loss.backward()
    """,
    "shadowed_next": """
        def next(it):
            return torch.zeros(())

        def probe(model, loader):
            x = next(iter(loader))
            (model(x) * 0).sum().backward()
    """,
}


@pytest.mark.parametrize("name", sorted(SOURCES_FLAGGED))
def test_batch_sources_flagged(name):
    _check(SOURCES_FLAGGED[name])


@pytest.mark.parametrize("name", sorted(SOURCES_CLEAN))
def test_batch_sources_clean(name):
    _check(SOURCES_CLEAN[name])


# ---------------------------------------------------------------------------------------------
# Batches flowing into a method's parameters from its call sites

DQN = """
    class Agent:
        def __init__(self, n_obs, n_act, gamma=0.99):
            self.q = nn.Linear(n_obs, n_act)
            self.target_q = nn.Linear(n_obs, n_act)
            self.gamma = gamma

        def learn(self, obs, act, rew, next_obs, done):
            q = self.q(obs).gather(1, act.unsqueeze(1)).squeeze(1)
            with torch.no_grad():
                target = rew + self.gamma * self.target_q(next_obs).max(1)[0] * (1 - done)
            loss = ((q - target) ** 2){reduce}
            loss.backward(){mark}
"""

METHODS = {
    "unknown_receiver_unique_method": (
        """
        def run(agent, replay_loader):
            for obs, act, rew, next_obs, done in replay_loader:
                agent.learn(obs, act, rew, next_obs, done)
        """
    ),
    "receiver_built_here": (
        """
        def run(replay_loader):
            agent = Agent(8, 4)
            for batch in replay_loader:
                agent.learn(*batch)
        """
    ),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_parameters_bound_from_loader_calls(name):
    _check(DQN.format(reduce="", mark="  # GL003"), METHODS[name])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_parameters_reduced_loss_clean(name):
    _check(DQN.format(reduce=".mean()", mark=""), METHODS[name])


def test_method_name_defined_by_two_classes_is_not_guessed():
    other = """
        class Other:
            def learn(self, obs, act, rew, next_obs, done):
                return obs
    """
    _check(DQN.format(reduce="", mark=""), other, METHODS["unknown_receiver_unique_method"])


def test_method_with_a_call_site_not_given_batches_stays_unknown():
    extra = """
        def warmup(agent, obs, act, rew, next_obs, done):
            agent.learn(obs, act, rew, next_obs, done)
    """
    _check(DQN.format(reduce="", mark=""), METHODS["unknown_receiver_unique_method"], extra)


def test_receiver_known_to_be_another_object_runs_no_method_of_the_module():
    calls = """
        def run(replay_loader, criterion=nn.MSELoss()):
            for obs, act, rew, next_obs, done in replay_loader:
                torch.learn(obs, act, rew, next_obs, done)
    """
    _check(DQN.format(reduce="", mark=""), calls)


# ---------------------------------------------------------------------------------------------
# Per-row torch functions keep the batch dimension

ROWWISE_FLAGGED = {
    "cosine_similarity_dim1": "1 - F.cosine_similarity(model(a), model(b), dim=1)",
    "cosine_similarity_default_dim": "1 - F.cosine_similarity(model(a), model(b))",
    "torch_cosine_similarity_positional_dim": "1 - torch.cosine_similarity(model(a), model(b), 1)",
    "pairwise_distance": "F.pairwise_distance(model(a), model(b))",
    "linalg_norm_dim1": "torch.linalg.norm(model(a) - b, dim=1)",
    "normalize_then_rowwise_sum": "(F.normalize(model(a), dim=1) * F.normalize(model(b), dim=1)).sum(dim=1)",
    "logsumexp_dim1": "torch.logsumexp(model(a), dim=1) - model(a).gather(1, b).squeeze(1)",
}

ROWWISE_CLEAN = {
    "cosine_similarity_mean": "(1 - F.cosine_similarity(model(a), model(b), dim=1)).mean()",
    "cosine_similarity_dim0": "1 - F.cosine_similarity(model(a), model(b), dim=0)",
    "cosine_similarity_dim_variable": "1 - F.cosine_similarity(model(a), model(b), dim=axis)",
    "pairwise_distance_sum": "F.pairwise_distance(model(a), model(b)).sum()",
    "linalg_norm_whole": "torch.linalg.norm(model(a) - b)",
}


def _rowwise(expr: str, mark: str) -> str:
    return f"""
        def train(model, loader, axis):
            for a, b in loader:
                loss = {expr}
                loss.backward(){mark}
    """


@pytest.mark.parametrize("name", sorted(ROWWISE_FLAGGED))
def test_rowwise_functions_flagged(name):
    _check(_rowwise(ROWWISE_FLAGGED[name], "  # GL003"))


@pytest.mark.parametrize("name", sorted(ROWWISE_CLEAN))
def test_rowwise_functions_clean(name):
    _check(_rowwise(ROWWISE_CLEAN[name], ""))


def test_cosine_loss_module_in_another_function_is_per_sample():
    _check(
        """
        class CosineSiamese(nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = nn.Linear(16, 8)

            def forward(self, left, right):
                return 1 - F.cosine_similarity(self.proj(left), self.proj(right), dim=1)


        def main(loader):
            model = CosineSiamese()
            for left, right in loader:
                loss = model(left, right)
                loss.backward()  # GL003
        """
    )


def test_common_container_method_name_is_not_guessed():
    """`stats.update(x, y)` on an unknown receiver may be a dict's or a meter's update, not the
    module's only `update` method: its parameters stay unknown."""
    _check(
        """
        class Learner:
            def __init__(self, model):
                self.model = model

            def update(self, x, y):
                loss = (self.model(x) - y) ** 2
                loss.backward()


        def run(stats, loader):
            for x, y in loader:
                stats.update(x, y)
        """
    )


def _project(tmp_path, data_module: str, train: str):
    (tmp_path / "data.py").write_text(textwrap.dedent(data_module))
    source = HEADER + textwrap.dedent(train)
    (tmp_path / "train.py").write_text(source)
    found = lint(source, str(tmp_path / "train.py"), ["GL003"], root=str(tmp_path), dedent=False)
    assert sorted(f.line for f in found) == marked_lines(source, "GL003"), [f.message for f in found]


TRAIN_ON_IMPORTED = """
    from data import make_batches


    def train(model, cfg):
        for x, y in make_batches(cfg):
            loss = per_sample(model, x, y)
            loss.backward(){mark}
"""


def test_imported_project_function_returning_a_dataloader(tmp_path):
    data = """
        from torch.utils.data import DataLoader

        def make_batches(cfg):
            return DataLoader(cfg.dataset, batch_size=cfg.batch_size, shuffle=True)
    """
    _project(tmp_path, data, TRAIN_ON_IMPORTED.format(mark="  # GL003"))


def test_imported_project_function_returning_samples_is_not_a_source(tmp_path):
    data = """
        def make_batches(cfg):
            return [(cfg.x, cfg.y)]
    """
    _project(tmp_path, data, TRAIN_ON_IMPORTED.format(mark=""))

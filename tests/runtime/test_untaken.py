"""untaken_backward: backward calls written beside a traced one that this run never took."""

from __future__ import annotations

import textwrap

from gradlint.runtime.untaken import untaken_backward

SOURCE = textwrap.dedent("""\
    import torch
    from torch.autograd import grad


    def train(model, batches, aux):
        for x in batches:
            loss = model(x).mean()
            loss.backward(retain_graph=True)
            if aux == "backward":
                model(x).abs().mean().backward()
            if aux == "grad":
                torch.autograd.grad(loss, x)
            if aux == "bare":
                grad(
                    loss, x,
                )

            def later():
                loss.backward()  # in a nested function: not this function's own call


    def other(loss):
        loss.backward()
""")


def _write(tmp_path, text=SOURCE):
    path = tmp_path / "train.py"
    path.write_text(text)
    return str(path)


def test_the_first_backward_written_beside_the_site_that_never_ran(tmp_path):
    path = _write(tmp_path)
    ran = {(path, 8)}
    assert untaken_backward(path, 8, ran) == 10
    assert untaken_backward(path, 8, ran | {(path, 10)}) == 12
    assert untaken_backward(path, 8, ran | {(path, 10), (path, 12)}) == 14
    # a call over several lines ran when a traced backward ran on any of them
    assert untaken_backward(path, 8, ran | {(path, 10), (path, 12), (path, 15)}) is None


def test_only_the_sites_own_function_counts(tmp_path):
    path = _write(tmp_path)
    assert untaken_backward(path, 23, {(path, 23)}) is None  # `other` has no second backward


def test_a_file_that_cannot_be_read_or_parsed_gives_no_answer(tmp_path):
    assert untaken_backward(str(tmp_path / "gone.py"), 3, set()) is None
    broken = _write(tmp_path, "def f(:\n    x.backward()\n")
    assert untaken_backward(broken, 2, set()) is None

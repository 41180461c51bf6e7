"""The prefilter's second stage (CPython's compiled names): what it keeps for the analysis, what it
skips, and that skipping never hides a finding."""

from __future__ import annotations

import pytest

from gradlint import engine, prefilter
from gradlint.analysis import AnalysisOptions, analyze
from gradlint.rules import checks_for
from gradlint.config import load_settings

pytestmark = pytest.mark.usefixtures("clean_env")

# Each may hold a finding, so each must reach the analysis.
KEPT = {
    "method": "loss.backward()\n",
    "dead code": "if False:\n    loss.backward()\n",
    "positional retain": "loss.backward(None, True)\n",
    "manual": "self.manual_backward(loss)\n",
    "autograd.backward": "import torch\ntorch.autograd.backward(loss)\n",
    "aliased backward": "from torch.autograd import backward as bw\nbw(loss)\n",
    "grad imported": "from torch.autograd import grad as g\ng(y, x, retain_graph=True)\n",
    "grad through module alias": "import torch.autograd as ag\nag.grad(y, x, retain_graph=True)\n",
    "grad through from-import": "from torch import autograd\nautograd.grad(y, x, retain_graph=True)\n",
    "in a lambda": "step = lambda: loss.backward(retain_graph=True)\n",
    "call split over lines": "(loss\n    .backward\n    (retain_graph=True))\n",
    "comment before the parenthesis": "(loss.backward  # keep it\n (retain_graph=True))\n",
    "parenthesised reference": "(loss.backward)()\n",
    "clip imported under another name": (
        "from torch.nn.utils import clip_grad_norm_ as clip\nclip(model.parameters(), 1.0)\n"
    ),
    "aliased in a parenthesised import": "from torch.autograd import (\n    backward as bw,\n)\nbw(loss)\n",
}

# Name a prefilter word without running a backward.
SKIPPED = {
    "autograd Function": (
        "import torch\n\n"
        "class Square(torch.autograd.Function):\n"
        "    '''Its backward returns 2 * x * grad.'''\n\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        "        ctx.save_for_backward(x)\n"
        "        return x * x\n\n"
        "    @staticmethod\n"
        "    def backward(ctx, grad):\n"
        "        (x,) = ctx.saved_tensors\n"
        "        return 2 * x * grad\n"
    ),
    "docstring": "def f(loss):\n    '''Call loss.backward(retain_graph=True) yourself.'''\n    return loss\n",
    "nn.grad, autograd in a comment": (
        "import torch\n# autograd is not used here\nout = torch.nn.grad.conv1d_input(size, w, g)\n"
    ),
    "attribute store": "import torch\nmodule.backward = None\n",
    # read, never called: every rule reports at a call (the table of torch's overrides)
    "read in a table": "import torch\nOVERRIDES = {torch.Tensor.backward: lambda self: -1}\n",
    "kept for later": "def hooks(node):\n    return [node.backward, node.backward_hooks]\n",
    "word after the name": "import torch\nif torch.Tensor.backward is not None and backwards(x): pass\n",
}


def _settings(root, overrides=None):
    return load_settings(str(root), isolated=True, overrides=overrides)


@pytest.mark.parametrize("name", sorted(KEPT))
def test_files_that_may_run_a_backward_are_analysed(name, tmp_path):
    settings = _settings(tmp_path)
    assert prefilter.needs_analysis(KEPT[name], None, "t.py", settings, settings.enabled_codes("t.py"))


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_words_without_a_backward_are_not_analysed_and_hide_nothing(name, tmp_path):
    settings = _settings(tmp_path)
    source = SKIPPED[name]
    if prefilter._compiler_keeps_dead_names():
        assert not prefilter.needs_analysis(source, None, "t.py", settings, settings.enabled_codes("t.py"))
    # the analysis itself, past the prefilter: skipping the file hid nothing
    assert analyze(source, "t.py", AnalysisOptions(), checks_for()) == []


def test_configured_helper_names_keep_a_file(tmp_path):
    settings = _settings(tmp_path, {"backward-functions": ["run_backward"]})
    source = "# backward\ndef train(run_backward):\n    run_backward(loss)\n"
    assert prefilter.needs_analysis(source, None, "t.py", settings, settings.enabled_codes("t.py"))


def test_compiler_failure_falls_back_to_the_analysis(tmp_path):
    # CPython rejects `return` outside a function; LibCST parses it, so the analysis decides.
    settings = _settings(tmp_path)
    source = "return loss.backward\n"
    possible, compiled = prefilter.prefilter(source, None, "t.py", settings, settings.enabled_codes("t.py"))
    assert possible and not compiled
    assert engine.lint_source(source, "t.py", settings) == []


def test_a_file_that_reads_a_name_without_calling_it_still_gets_its_syntax_error(tmp_path):
    # The call test comes after the compile: a file the words admit keeps its GL000.
    settings = _settings(tmp_path)
    source = "import torch\nOVERRIDES = {torch.Tensor.backward: -1}\ndef f(:\n    pass\n"
    possible, compiled = prefilter.prefilter(source, None, "t.py", settings, settings.enabled_codes("t.py"))
    assert possible and not compiled
    assert [f.code for f in engine.lint_source(source, "t.py", settings)] == ["GL000"]
    fixed = source.replace("def f(:", "def f():")
    assert prefilter.prefilter(fixed, None, "t.py", settings, settings.enabled_codes("t.py")) == (False, True)


# A helper body that runs no backward for its callers, and one that does (same name).
HELPER_BODIES = {
    "only mentions backward": ('    """Logs the loss before backward."""\n    print(loss)\n', "    loss.backward()\n"),
    "only reads backward": ("    return loss.backward\n", "    return loss.backward(retain_graph=True)\n"),
}


@pytest.mark.parametrize("name", sorted(HELPER_BODIES))
def test_a_helper_that_runs_no_backward_does_not_pull_in_its_callers(name, project):
    idle, running = HELPER_BODIES[name]
    project.write("helpers.py", "def report(loss):\n" + idle)
    project.write("train.py", "from helpers import report\nfor x in data:\n    report(model(x))\n")
    project.write("pyproject.toml", "[tool.gradlint]\n")
    settings = load_settings(str(project.root))
    data = (project.root / "train.py").read_bytes()
    enabled = settings.enabled_codes("train.py")
    if prefilter._compiler_keeps_dead_names():
        assert not prefilter.needs_analysis(data.decode(), data, "train.py", settings, enabled)
    project.write("helpers.py", "def report(loss):\n" + running)
    prefilter.forget_all()
    assert prefilter.needs_analysis(data.decode(), data, "train.py", settings, enabled)


def test_autograd_grad_without_the_word_backward_reaches_the_rule_through_the_cli(project, gradlint):
    # The rule found this all along; a prefilter that admitted only files naming `backward` or
    # `retain_graph` dropped it. Each rule's declared needs now decide (GL003 needs `autograd`).
    project.write("per_sample.py", """
        import torch
        import torch.nn.functional as F

        def per_sample_grads(model, params, x, y):
            per_sample_losses = F.cross_entropy(model(x), y, reduction="none")
            return torch.autograd.grad(per_sample_losses, params)
        """)
    result = gradlint("check", "--isolated", "--no-cache", "--output-format", "json", "per_sample.py")
    import json

    found = json.loads(result.stdout)
    assert [(f["name"], f["line"]) for f in found] == [("nonscalar-backward", 7)], result.stdout
    assert result.exit_code == 1


def test_each_rules_needs_decide_what_the_prefilter_admits(tmp_path):
    # `from torch import autograd` + `autograd.grad(...)`: GL003 may fire (its needs name
    # autograd), GL001 may not (it needs a backward call), so selecting only GL001 skips the file.
    settings = _settings(tmp_path)
    source = "from torch import autograd\ng = autograd.grad(losses, params)\n"
    assert prefilter.needs_analysis(source, None, "t.py", settings, {"GL003"})
    assert not prefilter.needs_analysis(source, None, "t.py", settings, {"GL001"})


# Make a tensor require grad, with no backward anywhere in the file (most of torch's own sources).
REQUIRES_GRAD_ONLY = (
    "import torch\n\n"
    "def make_inputs(shape):\n"
    "    x = torch.randn(shape, requires_grad=True)\n"
    "    x.requires_grad_()\n"
    "    y = x.detach()\n"
    "    y.requires_grad = True\n"
    "    return x, y\n"
)


def test_requires_grad_without_a_backward_is_not_analysed_and_hides_nothing(tmp_path):
    # GL007 pairs a leaf with a backward of the same file: without one nothing can fire.
    settings = _settings(tmp_path)
    for enabled in ({"GL007"}, settings.enabled_codes("t.py")):
        if prefilter._compiler_keeps_dead_names():
            assert not prefilter.needs_analysis(REQUIRES_GRAD_ONLY, None, "t.py", settings, enabled)
        assert analyze(REQUIRES_GRAD_ONLY, "t.py", AnalysisOptions(), checks_for(sorted(enabled))) == []


@pytest.mark.parametrize("backward", ["loss.backward()", "torch.autograd.grad(loss, [w])"])
def test_requires_grad_with_a_backward_reaches_the_leaf_rule(backward, tmp_path):
    settings = _settings(tmp_path)
    source = f"import torch\nloss = torch.tensor(loss.item(), requires_grad=True)\n{backward}\n"
    assert prefilter.needs_analysis(source, None, "t.py", settings, {"GL007"})


def test_a_run_trusts_the_files_it_has_looked_at_and_the_next_run_looks_again(project):
    # Within one run (one `lint_files`, one editor lint) a helper module read once is not stat-ed
    # again; `forget_answers` starts the next run, which must see the edit.
    project.write("helpers.py", "def report(loss):\n    print(loss)\n")
    project.write("train.py", "from helpers import report\nfor x in data:\n    report(model(x))\n")
    project.write("pyproject.toml", "[tool.gradlint]\n")
    settings = load_settings(str(project.root))
    enabled = settings.enabled_codes("train.py")
    prefilter.forget_all()
    assert not prefilter.needs_analysis("", b"from helpers import report\nreport(1)\n", "train.py", settings, enabled)
    project.write("helpers.py", "def report(loss):\n    loss.backward()  # now a step of training\n")
    prefilter.forget_answers()
    data = (project.root / "train.py").read_bytes()
    assert prefilter.needs_analysis(data.decode(), data, "train.py", settings, enabled)


IMPORT_TEXTS = [
    b"import os\nfrom a.b import (c,\n    d as e)\nx = 1; import f; from g import h\n",
    b"from q import (\n import_this,\nimport_that)\nimport r\n",  # `import` words inside a parenthesised list
    b"s = 'import t'\n# import u\nif x: import v\n    from . import w\n",
    b"from x import y",  # no newline at the end
    b"a = 1;from b import c;import d\r\nfrom e import f\r\n",
    b"from z import (a, b\nimport c\n",  # never closed: the list runs on to the next `)`
    b"",
]


@pytest.mark.parametrize("text", IMPORT_TEXTS)
def test_import_statements_from_import_lines_match_a_scan_of_the_whole_text(text):
    from gradlint.analysis import imports

    froms, found = imports._import_statements(text)
    assert [m.span() for m in froms] == [m.span() for m in imports._FROM.finditer(text)]
    assert [m.span() for m in found] == [m.span() for m in imports._IMPORT.finditer(text)]


def test_a_file_with_a_rule_word_but_none_of_the_names_is_not_compiled(tmp_path):
    # `grad` (GL005's word) and `requires_grad` (GL007's) without any backward, clip function,
    # `training_step` or `autograd`: no name stage two looks for is spelled, so no compile, and no
    # GL000 for a syntax error there (it cannot hold a finding; ruff reports it)
    settings = _settings(tmp_path)
    enabled = settings.enabled_codes("t.py")
    for source in ("x.requires_grad = True\nprint(x.grad)\n", "with torch.no_grad(:\n    pass\n"):
        assert prefilter.prefilter(source, None, "t.py", settings, enabled) == (False, False)
        assert prefilter.prefilter_stage(source, None, "t.py", settings, enabled) == prefilter.STAGE_NO_NAMES
        assert engine.lint_source(source, "t.py", settings) == []
    with_name = "with torch.no_grad(:\n    loss.backward()\n"
    assert [f.code for f in engine.lint_source(with_name, "t.py", settings)] == ["GL000"]


def test_a_helper_calling_autograd_grad_imported_at_the_top_of_its_module_pulls_in_its_callers(project):
    # the helper's own body spells only `grad`; `autograd` is named in its module's import
    project.write("helpers.py", "from torch.autograd import grad\n\n\ndef penalty(out, x):\n"
                  "    return grad(out, x, retain_graph=True)\n\n\ndef report(x):\n    print(x)\n")
    project.write("train.py", "from helpers import penalty\nfor x in data:\n    penalty(model(x), x)\n")
    project.write("quiet.py", "from helpers import report\nfor x in data:\n    report(x)\n")
    project.write("pyproject.toml", "[tool.gradlint]\n")
    settings = load_settings(str(project.root))
    prefilter.forget_all()
    for name, expected in (("train.py", True), ("quiet.py", False)):
        data = (project.root / name).read_bytes()
        assert prefilter.needs_analysis(data.decode(), data, name, settings, settings.enabled_codes(name)) is expected

"""The result cache: hits, misses, invalidation (content, settings, imported helpers), layout,
corruption and concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from cli_samples import CLEAN_LOOP, LOOP_WITHOUT_ZERO_GRAD
from gradlint import __version__
from gradlint.cache import Cache
from gradlint.config import load_settings
from gradlint.engine import lint_files

pytestmark = pytest.mark.usefixtures("clean_env")


def run(project, *files, **overrides):
    settings = load_settings(str(project.root), overrides=overrides or None)
    return lint_files(list(files), settings, jobs=1, use_cache=True)


def entries(project):
    top = project.root / ".gradlint_cache"
    return sorted(p for p in top.rglob("*.json"))


def test_second_run_hits_and_gives_the_same_findings(project):
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("ok.py", CLEAN_LOOP)
    cold = run(project, "t.py", "ok.py")
    warm = run(project, "t.py", "ok.py")
    assert cold.cache_hits == 0 and warm.cache_hits == 2
    assert warm.findings == cold.findings and [f.code for f in warm.findings] == ["GL001"]


def test_layout_and_gitignore(project):
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    run(project, "t.py")
    top = project.root / ".gradlint_cache"
    assert (top / ".gitignore").read_text().splitlines()[-1] == "*"
    (version_dir,) = [p for p in top.iterdir() if p.is_dir()]
    assert version_dir.name == __version__
    (entry,) = entries(project)
    stored = json.loads(entry.read_text())
    assert stored["findings"][0]["code"] == "GL001" and "path" not in stored["findings"][0]
    assert stored["deps"] == {}


def test_content_change_misses(project):
    path = project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    run(project, "t.py")
    path.write_text(CLEAN_LOOP)
    again = run(project, "t.py")
    assert again.cache_hits == 0 and again.findings == []
    os.utime(path, (0, 0))  # modification times do not matter, content does
    assert run(project, "t.py").cache_hits == 1


def test_settings_change_misses(project):
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    run(project, "t.py")
    ignored = run(project, "t.py", ignore=["GL001"])
    assert ignored.cache_hits == 0 and ignored.findings == []
    assert run(project, "t.py").cache_hits == 1  # the first settings' entries are still there
    assert run(project, "t.py", **{"clear-functions": ["reset"]}).cache_hits == 0


def test_per_file_ignores_are_part_of_the_key(project):
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    run(project, "t.py")
    project.write("pyproject.toml", "[tool.gradlint]\nper-file-ignores = {'t.py' = ['GL001']}\n")
    assert run(project, "t.py").findings == []


def test_edited_helper_module_invalidates_its_importers(project):
    helpers = project.write("helpers.py", "def reset(opt):\n    opt.zero_grad()\n")
    project.write("t.py", "from helpers import reset\n" + CLEAN_LOOP.replace("opt.zero_grad()", "reset(opt)"))
    run(project, "t.py", "helpers.py")
    assert run(project, "t.py").cache_hits == 1
    helpers.write_text("def reset(opt):\n    pass\n")
    again = run(project, "t.py")
    assert again.cache_hits == 0 and [f.code for f in again.findings] == ["GL001"]


def test_edited_caller_invalidates_a_callee_whose_findings_depend_on_it(project):
    # GL002 on helpers.py depends on how train.py calls `update` (fresh loader data each time).
    project.write("pyproject.toml", "[tool.gradlint]\n")
    project.write("helpers.py", "def update(optimizer, loss):\n    optimizer.zero_grad()\n"
                                "    loss.backward(retain_graph=True)\n    optimizer.step()\n")
    train = project.write("train.py", "import torch.nn.functional as F\nfrom helpers import update\n\n"
                                      "for x, y in loader:\n    update(opt, F.mse_loss(model(x), y))\n")
    first = run(project, "helpers.py")
    assert [f.code for f in first.findings] == ["GL002"]
    assert run(project, "helpers.py").cache_hits == 1
    # Now the caller walks the graph again through a second call: the retain is needed.
    train.write_text("from helpers import update\n\nfor x, y in loader:\n    out = model(x)\n"
                     "    update(opt, crit(out, y))\n    update(opt_aux, aux(out).mean())\n")
    again = run(project, "helpers.py")
    assert again.cache_hits == 0 and again.findings == []


def test_no_cache_writes_nothing_and_cache_dir_moves_it(project):
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    settings = load_settings(str(project.root))
    lint_files(["t.py"], settings, jobs=1, use_cache=False)
    assert not (project.root / ".gradlint_cache").exists()
    run(project, "t.py", **{"cache-dir": "elsewhere/c"})
    assert (project.root / "elsewhere" / "c" / ".gitignore").exists()
    assert not (project.root / ".gradlint_cache").exists()


def test_cache_beside_the_config_file(project):
    project.write("pyproject.toml", "[tool.gradlint]\n")
    project.write("pkg/t.py", LOOP_WITHOUT_ZERO_GRAD)
    settings = load_settings(str(project.root / "pkg"))
    lint_files([str(project.root / "pkg" / "t.py")], settings, jobs=1, use_cache=True)
    assert (project.root / ".gradlint_cache").is_dir() and not (project.root / "pkg" / ".gradlint_cache").exists()


def test_corrupt_entry_is_a_miss_and_is_rewritten(project):
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    first = run(project, "t.py")
    (entry,) = entries(project)
    entry.write_text("{not json")
    again = run(project, "t.py")
    assert again.cache_hits == 0 and again.findings == first.findings
    assert run(project, "t.py").cache_hits == 1


def test_unwritable_cache_degrades_to_no_cache(project):
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("blocker", "a file where the cache folder should be")
    result = run(project, "t.py", **{"cache-dir": "blocker/cache"})
    assert [f.code for f in result.findings] == ["GL001"] and result.errors == []


def _writer(args):
    root, rounds = args
    os.chdir(root)
    settings = load_settings(root)
    cache = Cache(settings)
    data = open("t.py", "rb").read()
    key = cache.key("t.py", data, settings.enabled_codes("t.py"))
    from gradlint.engine import lint_bytes

    findings = lint_bytes(data, "t.py", settings)
    for _ in range(rounds):
        cache.put(key, findings)
        got = cache.get(key, "t.py")
        assert got is None or got == findings  # never a torn entry
    return len(findings)


def test_concurrent_writers_never_corrupt(project):
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    with multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn").Pool(4) as pool:
        counts = pool.map(_writer, [(str(project.root), 40)] * 4)
    assert counts == [1, 1, 1, 1]
    (entry,) = entries(project)
    json.loads(entry.read_text())
    leftovers = [p for p in (project.root / ".gradlint_cache").rglob(".gradlint-*.tmp")]
    assert leftovers == []
    assert run(project, "t.py").cache_hits == 1


def test_parallel_run_fills_and_uses_the_cache(project):
    for i in range(10):
        project.write(f"m{i}.py", LOOP_WITHOUT_ZERO_GRAD if i % 2 else CLEAN_LOOP)
    settings = load_settings(str(project.root))
    files = [f"m{i}.py" for i in range(10)]
    cold = lint_files(files, settings, jobs=2, use_cache=True)
    warm = lint_files(files, settings, jobs=2, use_cache=True)
    assert warm.cache_hits == 10 and warm.findings == cold.findings and len(cold.findings) == 5


def test_check_uses_the_cache_by_default(project, gradlint):
    project.write("t.py", LOOP_WITHOUT_ZERO_GRAD)
    first = gradlint("check", "--output-format", "json")
    assert entries(project)
    second = gradlint("check", "--output-format", "json")
    assert first.stdout == second.stdout and first.exit_code == second.exit_code == 1


def test_cache_keys_do_not_depend_on_hash_seeds(project):
    """The helper walk is bounded; its order (and so the key) must be the same in every run."""
    import subprocess
    import sys

    for m in range(6):
        body = "".join(f"def f{i}(x):\n    return f{i + 1}(x) + g{m}.h(x)\n" for i in range(30))
        project.write(f"lib{m}.py", f"import lib{(m + 1) % 6} as g{m}\n" + body + "def f30(x):\n    return x\n")
    calls = "".join(f"    lib{m}.f0(x)\n" for m in range(6))
    project.write("t.py", "".join(f"import lib{m}\n" for m in range(6)) + "for x in data:\n" + calls)
    script = ("import sys; from gradlint.config import load_settings; from gradlint.cache import dependency_digest;"
              "s = load_settings('.', isolated=True); print(dependency_digest(open('t.py','rb').read(), 't.py', s))")
    digests = {
        subprocess.run([sys.executable, "-c", script], cwd=project.root, capture_output=True, text=True, check=True,
                       env=dict(os.environ, PYTHONHASHSEED=str(seed))).stdout
        for seed in (1, 2, 3)
    }
    assert len(digests) == 1


def test_notebook_entries_track_helper_modules(project):
    cells = [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
              "source": ["from helpers import reset\n", CLEAN_LOOP.replace("opt.zero_grad()", "reset(opt)")]}]
    project.write("nb.ipynb", json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    helpers = project.write("helpers.py", "def reset(opt):\n    opt.zero_grad()\n")
    run(project, "nb.ipynb")
    assert run(project, "nb.ipynb").cache_hits == 1
    helpers.write_text("def reset(opt):\n    pass\n")
    assert run(project, "nb.ipynb").cache_hits == 0


def test_a_re_exporting_package_init_is_a_dependency_of_the_files_calling_through_it(project):
    pkg = project.write("pkg/__init__.py", "from .utils import update\n")
    project.write("pkg/utils.py", "def update(loss, opt):\n    loss.backward()\n    opt.step()\n")
    project.write("train.py", "from pkg import update\n\nfor x, y in loader:\n    update(model(x).sum(), opt)\n")
    assert [f.code for f in run(project, "train.py").findings] == ["GL001"]
    pkg.write_text("def update(loss, opt):\n    pass\n")  # now defined in the package itself
    again = run(project, "train.py")
    assert again.cache_hits == 0 and again.findings == []


def test_a_new_caller_file_invalidates_a_callee_whose_findings_depend_on_its_callers(project):
    project.write("pyproject.toml", "[tool.gradlint]\n")
    project.write("helpers.py", "def update(optimizer, loss):\n    optimizer.zero_grad()\n"
                                "    loss.backward(retain_graph=True)\n    optimizer.step()\n")
    project.write("train.py", "import torch.nn.functional as F\nfrom helpers import update\n\n"
                              "for x, y in loader:\n    update(opt, F.mse_loss(model(x), y))\n")
    assert [f.code for f in run(project, "helpers.py").findings] == ["GL002"]
    # a second caller walks the graph again after the call: the retain is needed now
    project.write("tools/finetune.py", "from helpers import update\n\nfor x, y in loader:\n    out = model(x)\n"
                                       "    update(opt, crit(out, y))\n    update(opt_aux, aux(out).mean())\n")
    again = run(project, "helpers.py")
    assert again.cache_hits == 0 and again.findings == []


def test_a_module_created_where_an_import_now_resolves_invalidates_the_importer(project):
    project.write("pyproject.toml", "[tool.gradlint]\n")
    project.write("utils.py", "def update(loss, opt):\n    pass\n")
    project.write("scripts/train.py", "from utils import update\n\nfor x, y in loader:\n"
                                      "    update(model(x).sum(), opt)\n")
    assert run(project, "scripts/train.py").findings == []
    # `python scripts/train.py` imports scripts/utils.py first, once it exists
    project.write("scripts/utils.py", "def update(loss, opt):\n    loss.backward()\n    opt.step()\n")
    again = run(project, "scripts/train.py")
    assert again.cache_hits == 0 and [f.code for f in again.findings] == ["GL001"]


STORE_AND_BACKWARD = """\
def train(model, loader, optimizer):
    history = []
    for x, y in loader:
        loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss)
"""


def test_the_lines_a_finding_is_about_survive_the_cache(project):
    """`gradlint run` joins a cached GL006 to the backward it names, as it does a fresh one."""
    project.write("t.py", STORE_AND_BACKWARD)
    cold = run(project, "t.py")
    warm = run(project, "t.py")
    assert warm.cache_hits == 1
    assert [(f.code, f.related) for f in warm.findings] == [(f.code, f.related) for f in cold.findings] == \
        [("GL006", (6,))]


@pytest.mark.parametrize("related", ["6", [0], [True], ["6"], {"line": 6}])
def test_a_stored_finding_with_malformed_related_lines_is_a_miss(project, related):
    project.write("t.py", STORE_AND_BACKWARD)
    run(project, "t.py")
    (entry,) = entries(project)
    stored = json.loads(entry.read_text())
    stored["findings"][0]["related"] = related
    entry.write_text(json.dumps(stored))
    again = run(project, "t.py")
    assert again.cache_hits == 0 and [f.related for f in again.findings] == [(6,)]

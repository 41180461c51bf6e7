"""Warm runs answered from a whole-run manifest (gradlint/warm.py, gradlint/warm_record.py).

Every scenario runs the real command (`python -m gradlint check ...`) in a fresh interpreter under
``-X importtime``: a run the manifest answered never imports gradlint.cli, so the listing tells a
replayed run from a normal one without any timing. The projects are written once, filled, left
alone for longer than the racy-timestamp margin (one sleep for the whole module), and recorded;
then each test changes what its scenario is about and checks that the next run is not replayed
and prints exactly what a run without any cache prints.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli_samples import CLEAN_LOOP, LOOP_WITHOUT_ZERO_GRAD
from gradlint import warm, warm_record

RETAINING_LOOP = LOOP_WITHOUT_ZERO_GRAD.replace("loss.backward()", "loss.backward(retain_graph=True)")
FORMATS = ("full", "concise", "json", "sarif", "gitlab")


@dataclass
class Run:
    status: int
    out: bytes
    err: bytes  # without the importtime lines
    served: bool  # answered from a manifest (gradlint.cli never imported)


def _env() -> dict:
    env = dict(os.environ)
    for name in ("GITHUB_ACTIONS", "GRADLINT_OUTPUT_FORMAT", "GITHUB_STEP_SUMMARY", "FORCE_COLOR", "NO_COLOR",
                 "GRADLINT_CACHE_DIR", "GRADLINT_NO_CACHE", "CI_PROJECT_DIR", "GITHUB_WORKSPACE"):
        env.pop(name, None)
    return env


def run_check(cwd: Path, *args: str) -> Run:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "gradlint", "check", *args], cwd=str(cwd),
                            env=_env(), capture_output=True, timeout=300, check=False)
    lines = result.stderr.splitlines(keepends=True)
    modules = {line.rsplit(b"|", 1)[1].strip() for line in lines if line.startswith(b"import time:")}
    err = b"".join(line for line in lines if not line.startswith(b"import time:"))
    assert b"Traceback" not in err, err.decode(errors="replace")
    return Run(result.returncode, result.stdout, err, b"gradlint.cli" not in modules)


@dataclass
class Scenario:
    root: Path  # the project
    cwd: Path
    args: tuple  # the recorded command line (after `check`)
    cache: Path

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def run(self, *args: str) -> Run:
        return run_check(self.cwd, *(args or self.args))

    def truth(self, *args: str) -> Run:
        """The same command without any cache (so without any manifest)."""
        plain = [a for a in (args or self.args)]
        index = plain.index("--cache-dir")
        del plain[index:index + 2]
        return run_check(self.cwd, "--no-cache", *plain)


def _scenario(base: Path, name: str, files: dict, args: tuple, cwd: str = "") -> Scenario:
    root = base / name
    cache = base / "caches" / name
    scenario = Scenario(root, root / cwd, ("--cache-dir", str(cache)) + args, cache)
    for rel, text in files.items():
        scenario.write(rel, text)
    scenario.cwd.mkdir(parents=True, exist_ok=True)
    return scenario


def _same_size_edit(path: Path, old: str, new: str) -> None:
    """Edit `path` keeping its size and its mtime (to the nanosecond): only ctime tells."""
    assert len(old) == len(new)
    before = path.stat()
    path.write_text(path.read_text().replace(old, new))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    base = tmp_path_factory.mktemp("warm")
    made = {
        "same_size": _scenario(base, "same_size", {"train.py": RETAINING_LOOP, "sub/ok.py": CLEAN_LOOP},
                               ("--isolated", "--output-format", "concise", ".")),
        "added": _scenario(base, "added", {"train.py": CLEAN_LOOP, "sub/ok.py": CLEAN_LOOP}, ("--isolated", ".")),
        "removed": _scenario(base, "removed", {"train.py": LOOP_WITHOUT_ZERO_GRAD, "sub/ok.py": CLEAN_LOOP},
                             ("--isolated", ".")),
        "config": _scenario(base, "config", {"pyproject.toml": "[tool.gradlint]\nselect = ['GL001', 'GL002']\n",
                                             "train.py": RETAINING_LOOP}, (".",)),
        "config_above": _scenario(base, "config_above", {"sub/train.py": RETAINING_LOOP}, (".",), cwd="sub"),
        "gitignore": _scenario(base, "gitignore", {".gitignore": "nothing.py\n", "train.py": LOOP_WITHOUT_ZERO_GRAD,
                                                   "ok.py": CLEAN_LOOP}, ("--isolated", ".")),
        "dependency": _scenario(base, "dependency", {
            "helpers.py": "def reset(opt):\n    opt.zero_grad()\n",
            "t.py": "from helpers import reset\n" + CLEAN_LOOP.replace("opt.zero_grad()", "reset(opt)")},
            ("--isolated", "t.py")),
        "caller": _scenario(base, "caller", {
            "pyproject.toml": "[tool.gradlint]\n",
            "helpers.py": "def update(optimizer, loss):\n    optimizer.zero_grad()\n"
                          "    loss.backward(retain_graph=True)\n    optimizer.step()\n",
            "train.py": "import torch.nn.functional as F\nfrom helpers import update\n\n"
                        "for x, y in loader:\n    update(opt, F.mse_loss(model(x), y))\n"}, ("helpers.py",)),
        "new_caller": _scenario(base, "new_caller", {
            "pyproject.toml": "[tool.gradlint]\n",
            "pkg/helpers.py": "def update(optimizer, loss):\n    optimizer.zero_grad()\n"
                              "    loss.backward(retain_graph=True)\n    optimizer.step()\n",
            "train.py": "import torch.nn.functional as F\nfrom pkg.helpers import update\n\n"
                        "for x, y in loader:\n    update(opt, F.mse_loss(model(x), y))\n"}, ("pkg",)),
        "link": _scenario(base, "link", {"train.py": CLEAN_LOOP}, ("--isolated", ".")),
        "other_argv": _scenario(base, "other_argv", {"train.py": RETAINING_LOOP}, ("--isolated", ".")),
        "corrupt": _scenario(base, "corrupt", {"train.py": RETAINING_LOOP}, ("--isolated", ".")),
        "formats": _scenario(base, "formats", {"train.py": RETAINING_LOOP, "ok.py": CLEAN_LOOP}, ("--isolated", ".")),
        "github": _scenario(base, "github", {"train.py": RETAINING_LOOP},
                            ("--isolated", "--output-format", "github", ".")),
    }
    (base / "outside").mkdir()  # the link's target lies outside every folder the run walks
    os.symlink(str(base / "outside" / "missing.py"), str(base / "link" / "dangling.py"))
    commands = {name: [s.args] for name, s in made.items()}
    commands["formats"] = [made["formats"].args + ("--output-format", fmt) for fmt in FORMATS]
    commands["formats"].append(made["formats"].args + ("--statistics",))
    for scenario in made.values():  # fill the result caches
        scenario.run()
    time.sleep(warm_record.MARGIN_NS / 1e9 + 0.5)  # nothing here is "racily" new any more
    for name, scenario in made.items():  # record the manifests
        for args in commands[name]:
            assert scenario.run(*args).status in (0, 1), name
    return made


def replayed(scenario: Scenario, *args: str) -> Run:
    again = scenario.run(*args)
    assert again.served, "the unchanged run was not answered from its manifest"
    return again


def check_relinted(scenario: Scenario, before: Run) -> Run:
    after = scenario.run()
    truth = scenario.truth()
    assert not after.served
    assert (after.status, after.out, after.err) == (truth.status, truth.out, truth.err)
    assert (after.out, after.err) != (before.out, before.err)
    return after


def test_file_edited_with_same_size_and_mtime_is_relinted(scenarios):
    scenario = scenarios["same_size"]
    before = replayed(scenario)
    assert b"GL002" in before.out
    _same_size_edit(scenario.root / "train.py", "retain_graph=True", "retain_graph=None")
    after = check_relinted(scenario, before)
    assert b"GL002" not in after.out


def test_file_added_to_a_walked_folder(scenarios):
    scenario = scenarios["added"]
    before = replayed(scenario)
    assert before.status == 0
    scenario.write("sub/new.py", LOOP_WITHOUT_ZERO_GRAD)
    after = check_relinted(scenario, before)
    assert b"sub/new.py" in after.out and after.status == 1


def test_file_removed_from_a_walked_folder(scenarios):
    scenario = scenarios["removed"]
    before = replayed(scenario)
    assert b"train.py" in before.out
    (scenario.root / "train.py").unlink()
    after = check_relinted(scenario, before)
    assert after.status == 0 and b"train.py" not in after.out


def test_config_edited(scenarios):
    scenario = scenarios["config"]
    before = replayed(scenario)
    assert b"GL002" in before.out
    scenario.write("pyproject.toml", "[tool.gradlint]\nselect = ['GL001']\n")
    after = check_relinted(scenario, before)
    assert b"GL002" not in after.out


def test_config_created_in_a_folder_above(scenarios):
    scenario = scenarios["config_above"]
    before = replayed(scenario)
    assert b"GL002" in before.out
    scenario.write("pyproject.toml", "[tool.gradlint]\nignore = ['GL002']\n")
    after = check_relinted(scenario, before)
    assert b"GL002" not in after.out


def test_gitignore_edited(scenarios):
    scenario = scenarios["gitignore"]
    before = replayed(scenario)
    assert b"train.py" in before.out
    scenario.write(".gitignore", "train.py\n")
    after = check_relinted(scenario, before)
    assert b"train.py" not in after.out


def test_helper_module_in_another_file_edited(scenarios):
    scenario = scenarios["dependency"]
    before = replayed(scenario)
    assert before.status == 0
    scenario.write("helpers.py", "def reset(opt):\n    pass\n")
    after = check_relinted(scenario, before)
    assert b"GL001" in after.out


def test_caller_read_by_the_analysis_edited(scenarios):
    scenario = scenarios["caller"]
    before = replayed(scenario)
    assert b"GL002" in before.out
    scenario.write("train.py", "from helpers import update\n\nfor x, y in loader:\n    out = model(x)\n"
                               "    update(opt, crit(out, y))\n    update(opt_aux, aux(out).mean())\n")
    after = check_relinted(scenario, before)
    assert b"GL002" not in after.out


def test_new_caller_outside_the_walked_folders(scenarios):
    # the caller search reads the whole project: a file added where the run does not walk (the
    # run checks pkg/ only) can make the retain needed
    scenario = scenarios["new_caller"]
    before = replayed(scenario)
    assert b"GL002" in before.out
    scenario.write("tools/finetune.py", "from pkg.helpers import update\n\nfor x, y in loader:\n"
                                        "    out = model(x)\n    update(opt, crit(out, y))\n"
                                        "    update(opt_aux, aux(out).mean())\n")
    after = check_relinted(scenario, before)
    assert b"GL002" not in after.out


def test_dangling_link_that_comes_to_point_at_a_file(scenarios):
    scenario = scenarios["link"]
    before = replayed(scenario)
    assert before.status == 0
    (scenario.root.parent / "outside" / "missing.py").write_text(LOOP_WITHOUT_ZERO_GRAD)  # the folder is unchanged
    after = check_relinted(scenario, before)
    assert b"dangling.py" in after.out


def test_another_command_line_is_not_answered_by_a_manifest_of_another(scenarios):
    scenario = scenarios["other_argv"]
    replayed(scenario)
    for extra in (("--output-format", "json"), ("--select", "GL001"), ("--exit-zero",)):
        args = scenario.args + extra
        other = scenario.run(*args)
        truth = scenario.truth(*args)
        assert not other.served
        assert (other.status, other.out, other.err) == (truth.status, truth.out, truth.err)


def test_corrupt_or_truncated_manifest_means_a_normal_run(scenarios):
    scenario = scenarios["corrupt"]
    good = replayed(scenario)
    (manifest,) = (scenario.cache / warm.FOLDER).iterdir()
    blob = manifest.read_bytes()
    for broken in (blob[: len(blob) // 2], blob[:-1] + bytes([blob[-1] ^ 0xFF]), b"", b"garbage\n" * 10,
                   warm.MAGIC + b"zzzzzzzz\n" + blob[len(warm.MAGIC) + 9:]):
        manifest.write_bytes(broken)
        again = scenario.run()
        assert not again.served
        assert (again.status, again.out, again.err) == (good.status, good.out, good.err)


def test_replayed_output_equals_a_normal_run_in_every_format(scenarios):
    scenario = scenarios["formats"]
    variants = [("--output-format", fmt) for fmt in FORMATS] + [("--statistics",)]
    for extra in variants:
        args = scenario.args + extra
        fast = replayed(scenario, *args)
        truth = scenario.truth(*args)
        assert (fast.status, fast.out, fast.err) == (truth.status, truth.out, truth.err), extra
    assert fast.out  # something was compared


def test_side_effect_formats_are_never_recorded(scenarios):
    """The github format appends to $GITHUB_STEP_SUMMARY when that is set: never replayed."""
    scenario = scenarios["github"]
    again = scenario.run()
    truth = scenario.truth()
    assert not again.served and not (scenario.cache / warm.FOLDER).exists()
    assert (again.status, again.out, again.err) == (truth.status, truth.out, truth.err)


def test_replayed_run_imports_neither_click_nor_the_engine(scenarios, tmp_path):
    scenario = scenarios["formats"]
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "gradlint", "check", *scenario.args,
                             "--output-format", "full"], cwd=str(scenario.cwd), env=_env(), capture_output=True,
                            check=False)
    modules = {line.rsplit(b"|", 1)[1].strip().decode() for line in result.stderr.splitlines()
               if line.startswith(b"import time:")}
    assert "gradlint.warm" in modules
    assert not modules & {"click", "libcst", "gradlint.cli", "gradlint.engine", "gradlint.config"}


def test_both_entry_points_reach_the_fast_path():
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert 'gradlint = "gradlint.__main__:main"' in pyproject.read_text()
    main = Path(warm.__file__).with_name("__main__.py").read_text()
    assert "def main()" in main and "warm.serve(" in main


# ---------------------------------------------------------------------------------------------
# The recorder's rules, without subprocesses


def test_racy_paths_are_not_recorded(tmp_path, monkeypatch):
    """A path changed within the margin before the run started could be changed again without
    its stat telling: no manifest. The same run started later (all paths old enough) records."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.py").write_text(CLEAN_LOOP)

    class Settings:
        config_path = None
        cache_path = str(tmp_path / "cache")

    class Result:
        errors: list = []
        dependencies: set = set()

    recorder = warm_record.Recorder(["check", "t.py"], b"key")
    recorder.snapshot(["t.py"])
    recorder.note(["t.py"], ["t.py"], Settings(), Result())
    recorder.log.append((1, b"out"))
    assert recorder.manifest(0) is None  # t.py's ctime is not older than the start minus the margin
    recorder.started = (tmp_path / "t.py").stat().st_ctime_ns + warm_record.MARGIN_NS + 1
    recorder.outer = {}
    recorder.snapshot(["t.py"])
    blob = recorder.manifest(0)
    assert blob is not None
    key, paths, wants, chunks, status = warm.unpack(blob)
    assert "t.py" in paths and chunks == ((1, b"out"),) and status == 0
    assert warm.unchanged(paths, wants)


def test_a_run_with_errors_or_unknown_dependencies_is_not_recorded(tmp_path):
    class Result:
        errors = ["internal error while checking t.py: boom"]
        dependencies: set = set()

    recorder = warm_record.Recorder(["check", "."], b"key")
    recorder.note(["."], ["t.py"], object(), Result())
    assert recorder.run is None and recorder.manifest(1) is None
    Result.errors = []
    Result.dependencies = None  # type: ignore[assignment]
    recorder.note(["."], ["t.py"], object(), Result())
    assert recorder.run is None


def test_options_that_write_or_read_elsewhere_are_never_keyed():
    for argv in (["check", "--fix", "."], ["check", "-"], ["check", "-o", "r.json"], ["check", "--output=r.json"],
                 ["check", "-qo", "r"], ["check", "--diff"], ["check", "--baseline", "b.json"], ["check", "--no-cache"],
                 ["check", "--add-noqa"], ["check", "--write-baseline=b"], ["run", "x.py"], []):
        assert warm.run_key(argv) is None, argv
    assert warm.run_key(["check", "--isolated", "."]) is not None

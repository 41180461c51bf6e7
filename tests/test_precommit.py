"""The pre-commit hook, end to end with the real pre-commit on fresh git repositories.

The hook repository is a committed snapshot of this checkout's package (pyproject, gradlint/,
rules/, the manifest; tracked and untracked-but-not-ignored files), so the test sees the working
tree and does not depend on how CI copied the checkout. pre-commit pip-installs it, with libcst,
click and pathspec from the package index, into a virtualenv of its own.

`pre-commit try-repo` always installs into a fresh temporary store (it ignores PRE_COMMIT_HOME),
so it is used for the two core runs (--all-files and --files); the other scenarios run the same
hook through `pre-commit run -c CONFIG` with PRE_COMMIT_HOME shared by the module, so that
environment is installed once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT_PATHS = ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml", "gradlint", "rules")

BUGGY = """import torch

model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(5):
    x = torch.randn(8, 4)
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
"""
CLEAN = BUGGY.replace("    loss.backward()\n", "    optimizer.zero_grad()\n    loss.backward()\n")
EXCLUDING_CONFIG = '[tool.gradlint]\nexclude = [".git", "vendored"]\nextend-exclude = ["legacy/"]\n'


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=gradlint tests", "-c", "user.email=tests@gradlint.invalid",
         "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    )
    return done.stdout.strip()


def package_files(root: Path) -> list:
    """The snapshot's files: what git would ship (tracked, or untracked but not ignored); when
    the checkout is not a git work tree, every file under the snapshot paths but caches."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", *SNAPSHOT_PATHS],
        cwd=root, capture_output=True, check=False,
    )
    if listing.returncode == 0:
        names = listing.stdout.decode().split("\0")
    else:
        names = [str(p.relative_to(root)) for top in SNAPSHOT_PATHS for p in
                 ([root / top] if (root / top).is_file() else (root / top).rglob("*"))]
    return sorted({n for n in names if n and (root / n).is_file() and "__pycache__" not in n})


@pytest.fixture(scope="module")
def hooks(tmp_path_factory):
    """(snapshot repo path, its commit, environment with a module-wide PRE_COMMIT_HOME)."""
    base = tmp_path_factory.mktemp("precommit")
    snapshot = base / "gradlint-src"
    for rel in package_files(ROOT):
        target = snapshot / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    git(snapshot, "init", "-q")
    git(snapshot, "add", "-A")
    git(snapshot, "commit", "-q", "-m", "snapshot")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT", "GRADLINT_", "GITHUB_"))}
    env.update(PRE_COMMIT_HOME=str(base / "cache"), PRE_COMMIT_COLOR="never", NO_COLOR="1")
    config = base / "pre-commit-config.yaml"
    config.write_text(
        f"repos:\n  - repo: {snapshot}\n    rev: {git(snapshot, 'rev-parse', 'HEAD')}\n    hooks:\n      - id: gradlint\n      - id: gradlint-fix\n        stages: [manual]\n",
        encoding="utf-8",
    )
    return snapshot, config, env


def project(tmp_path: Path, files: dict, name: str = "project") -> Path:
    """A fresh git repository with `files` staged."""
    repo = tmp_path / name
    repo.mkdir()
    git(repo, "init", "-q")
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if files:
        git(repo, "add", "-A")
    return repo


def pre_commit(hooks, repo: Path, *args: str):
    """(exit status, output) of `python -m pre_commit ARGS` in `repo`."""
    _, _, env = hooks
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", *args],
        cwd=repo, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    return done.returncode, done.stdout + done.stderr


def try_repo(hooks, repo: Path, *args: str):
    return pre_commit(hooks, repo, "try-repo", str(hooks[0]), "gradlint", "--verbose", *args)


def run_hook(hooks, repo: Path, *args: str):
    return pre_commit(hooks, repo, "run", "-c", str(hooks[1]), "--verbose", *args)


def test_manifest_is_valid():
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-manifest", str(ROOT / ".pre-commit-hooks.yaml")],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def mixed_repo(tmp_path):
    """A buggy script, a clean one, and buggy ones in folders the configuration excludes."""
    return project(
        tmp_path,
        {
            "pyproject.toml": EXCLUDING_CONFIG,
            "train.py": BUGGY,
            "clean.py": CLEAN,
            "legacy/old_train.py": BUGGY,
            "vendored/loop.py": BUGGY,
            "README.md": "docs\n",
        },
    )


def test_try_repo_all_files_fails_on_the_buggy_script_only(hooks, mixed_repo):
    rc, out = try_repo(hooks, mixed_repo, "--all-files")
    assert rc == 1, out
    assert "GL001" in out and "train.py:8:5:" in out
    # excluded by [tool.gradlint] although pre-commit named them (--force-exclude); clean is clean
    assert "old_train.py:" not in out and "vendored/loop.py:" not in out and "clean.py:" not in out


def test_try_repo_files_passes_on_clean_and_excluded_files(hooks, mixed_repo):
    rc, out = try_repo(hooks, mixed_repo, "--files", "clean.py", "legacy/old_train.py", "vendored/loop.py")
    assert rc == 0, out
    assert "GL0" not in out


def test_fails_on_buggy_file_named_with_files(hooks, mixed_repo):
    rc, out = run_hook(hooks, mixed_repo, "--files", "train.py", "clean.py")
    assert rc == 1 and "train.py:8:5: GL001" in out and "clean.py:" not in out, out


def test_passes_on_clean_code(hooks, tmp_path):
    repo = project(tmp_path, {"train.py": CLEAN, "pkg/util.py": "def f():\n    return 1\n"})
    rc, out = run_hook(hooks, repo, "--all-files")
    assert rc == 0, out
    assert "GL0" not in out


def test_passes_without_python_files(hooks, tmp_path):
    repo = project(tmp_path, {"README.md": "no code here\n", "data.json": "{}\n"})
    rc, out = run_hook(hooks, repo, "--all-files")
    assert rc == 0, out
    assert "no files to check" in out.lower()
    rc, out = run_hook(hooks, project(tmp_path, {}, name="empty"), "--all-files")  # nothing staged
    assert rc == 0, out


def test_passes_when_every_named_file_is_excluded(hooks, tmp_path):
    repo = project(tmp_path, {"pyproject.toml": EXCLUDING_CONFIG, "legacy/a.py": BUGGY, "legacy/b.py": BUGGY})
    rc, out = run_hook(hooks, repo, "--all-files")
    assert rc == 0, out
    assert "GL0" not in out


def test_fix_hook_rewrites_and_fails_once(hooks, tmp_path):
    retained = (
        "import torch\n\nw = torch.ones(3, requires_grad=True)\nfor step in range(3):\n"
        "    loss = (w * 2).sum()\n    loss.backward(retain_graph=True)\n"
    )
    repo = project(tmp_path, {"loop.py": retained})
    rc, out = run_hook(hooks, repo, "--hook-stage", "manual", "gradlint-fix", "--all-files")
    assert rc == 1 and "files were modified by this hook" in out, out
    assert "loss.backward()\n" in (repo / "loop.py").read_text(encoding="utf-8")
    git(repo, "add", "-A")
    rc, out = run_hook(hooks, repo, "--hook-stage", "manual", "gradlint-fix", "--all-files")
    assert rc == 0, out

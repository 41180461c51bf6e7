"""--add-noqa numbers lines as Python's tokenizer does (not str.splitlines), never puts a
comment inside a string, and exits 1 with a message when it had to skip lines."""

from __future__ import annotations

import os
import subprocess
import sys

from gradlint.findings import Finding
from gradlint.fixes import add_noqa, noqa_edits

TRAIN = (
    "import torch\n"
    "model = torch.nn.Linear(2, 1)\n"
    "x = torch.randn(3, 2)\n"
    "loss = model(x).sum()\n"
)


def gradlint(*args, cwd):
    env = dict(os.environ)
    env.pop("GRADLINT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "gradlint", *args], cwd=cwd, capture_output=True, env=env,
                          timeout=300)


def _finding(line: int) -> Finding:
    return Finding(code="GL002", message="m", path="t.py", line=line, column=1, end_line=line, end_column=2,
                   severity="warning")


def test_form_feeds_do_not_move_the_noqa_into_a_string():
    text = "# a\x0c b\x0c c\x0c d\nDOC = '''\nline\n'''\nloss.backward(retain_graph=True)\n"
    new, count = add_noqa(text, [_finding(5)])
    assert count == 1
    assert new == text.replace("loss.backward(retain_graph=True)\n",
                               "loss.backward(retain_graph=True)  # noqa: GL002\n")


def test_lone_carriage_returns_count_as_line_ends():
    text = "a = 1\rb = 2\rloss.backward(retain_graph=True)\r"
    new, count = add_noqa(text, [_finding(3)])
    assert count == 1 and new == "a = 1\rb = 2\rloss.backward(retain_graph=True)  # noqa: GL002\r"


def test_lines_that_cannot_take_a_comment_are_counted_as_skipped():
    text = "x = f(1, \\\n      2)\ns = '''\nabc'''\n"
    edits, count, skipped = noqa_edits(text, [_finding(1), _finding(3)])
    assert (edits, count, skipped) == ([], 0, 2)


def test_add_noqa_in_the_cli_counts_tokenizer_lines(tmp_path):
    source = ("# header\x0c with\x0c form\x0c feeds\n" + TRAIN + "DOC = '''\nthree\nlines\n'''\n"
              "loss.backward(retain_graph=True)\n")
    (tmp_path / "t.py").write_text(source)
    run = gradlint("check", "--no-cache", "--add-noqa", ".", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "t.py").read_text() == source.replace(
        "loss.backward(retain_graph=True)\n", "loss.backward(retain_graph=True)  # noqa: GL002\n")
    assert gradlint("check", "--no-cache", ".", cwd=tmp_path).returncode == 0


def test_skipped_lines_make_add_noqa_exit_1_with_a_message(tmp_path):
    source = TRAIN + "loss.backward(retain_graph=True); s = '''\n'''\n"
    (tmp_path / "t.py").write_text(source)
    run = gradlint("check", "--no-cache", "--add-noqa", ".", cwd=tmp_path)
    assert run.returncode == 1
    assert b"not annotated" in run.stderr
    assert (tmp_path / "t.py").read_text() == source

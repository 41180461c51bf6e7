"""--fix writes exactly what it means to: only onto the bytes the fixes were computed from (a
symlink and its target, a file changed meanwhile, two runs at once), in the file's own encoding
with every byte outside the edit unchanged (coding cookies, cp932, BOM, line endings), keeping a
trailing comment of a removed argument; fixes are never taken from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gradlint.atomic import SourceChanged, sha256
from gradlint.fixes import edit_bytes, fix_file
from gradlint.findings import Edit

TRAIN = (
    "import torch\n"
    "model = torch.nn.Linear(2, 1)\n"
    "x = torch.randn(3, 2)\n"
    "loss = model(x).sum()\n"
)


def gradlint(*args, cwd, stdin=None, env=None):
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("GRADLINT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "gradlint", *args], cwd=cwd, input=stdin,
                          capture_output=True, env=full_env, timeout=300)


def test_symlink_and_target_in_one_run_are_fixed_once(tmp_path):
    real = tmp_path / "real.py"
    real.write_text(TRAIN + "loss.backward(retain_graph=True); y = (1, 2, 3, 4, 5, 6)\n")
    os.symlink("real.py", tmp_path / "link.py")
    run = gradlint("check", "--no-cache", "--fix", ".", cwd=tmp_path)
    assert real.read_text() == TRAIN + "loss.backward(); y = (1, 2, 3, 4, 5, 6)\n"
    assert os.path.islink(tmp_path / "link.py")
    assert run.returncode == 0, run.stderr
    assert b"Fixed 1 finding" in run.stderr


def test_a_file_changed_since_the_lint_is_relinted_not_patched(tmp_path):
    target = tmp_path / "t.py"
    linted = (TRAIN + "loss.backward(retain_graph=True)\n").encode()
    target.write_bytes(b"# a line an editor added\n" + linted)
    from gradlint.config import load_settings
    from gradlint.engine import lint_bytes

    settings = load_settings(str(tmp_path), isolated=True)
    stale = lint_bytes(linted, str(target), settings)
    assert stale and stale[0].fix is not None
    with pytest.raises(SourceChanged):  # without a way to relint: skipped, file untouched
        fix_file(str(target), stale, digest=sha256(linted))
    assert target.read_bytes() == b"# a line an editor added\n" + linted
    count = fix_file(str(target), stale, digest=sha256(linted),
                     relint=lambda data: lint_bytes(data, str(target), settings))
    assert count == 1
    assert target.read_bytes() == b"# a line an editor added\n" + (TRAIN + "loss.backward()\n").encode()


def test_two_fix_runs_at_once_never_corrupt(tmp_path):
    sources = {}
    for i in range(12):
        text = TRAIN + f"loss.backward(retain_graph=True); y{i} = (1, 2, 3, 4, 5, 6)\n"
        (tmp_path / f"m{i}.py").write_text(text)
        sources[f"m{i}.py"] = text.replace("retain_graph=True", "")
    procs = [subprocess.Popen([sys.executable, "-m", "gradlint", "check", "--no-cache", "--fix", "-j2", "."],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        proc.communicate(timeout=300)
        assert proc.returncode in (0, 1)
    for name, expected in sources.items():
        assert (tmp_path / name).read_text() == expected


def test_stdin_fix_keeps_a_latin1_cookie_file_latin1(tmp_path):
    source = ("# -*- coding: latin-1 -*-\n" + TRAIN + "name = 'café'\nloss.backward(retain_graph=True)\n").encode("latin-1")
    run = gradlint("check", "--no-cache", "--fix", "-", "--stdin-filename", "x.py", cwd=tmp_path, stdin=source)
    assert run.stdout == source.replace(b"retain_graph=True", b"")
    assert run.returncode == 0, run.stderr


def test_stdin_fix_on_an_ascii_stdout_is_not_an_internal_error(tmp_path):
    source = (TRAIN + "name = 'café ✓'\nloss.backward(retain_graph=True)\n").encode()
    run = gradlint("check", "--no-cache", "--fix", "-", "--stdin-filename", "x.py", cwd=tmp_path, stdin=source,
                   env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    assert run.returncode == 0, run.stderr
    assert run.stdout == source.replace(b"retain_graph=True", b"")


def test_file_fix_keeps_bom_crlf_and_cp932_bytes_outside_the_edit(tmp_path):
    # b"\x87\x90" and b"\x81\xe0" both decode to U+2252 in cp932; re-encoding gives the latter.
    cp932 = (b"# -*- coding: cp932 -*-\r\n" + TRAIN.replace("\n", "\r\n").encode()
             + b"mark = '\x87\x90'\r\nloss.backward(retain_graph=True)\r\n")
    assert cp932.decode("cp932").encode("cp932") != cp932  # the round trip is not exact
    (tmp_path / "j.py").write_bytes(cp932)
    bom = b"\xef\xbb\xbf" + (TRAIN + "loss.backward(retain_graph=True)\n").replace("\n", "\r\n").encode()
    (tmp_path / "b.py").write_bytes(bom)
    run = gradlint("check", "--no-cache", "--fix", ".", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "j.py").read_bytes() == cp932.replace(b"retain_graph=True", b"")
    assert (tmp_path / "b.py").read_bytes() == bom.replace(b"retain_graph=True", b"")


def test_edit_bytes_maps_character_offsets_through_multibyte_text():
    data = "é = 1\nx = 2\n".encode("utf-8")
    new, text = edit_bytes(data, [Edit(10, 11, "3")])
    assert new == "é = 1\nx = 3\n".encode("utf-8") and text == "é = 1\nx = 3\n"
    with pytest.raises(ValueError, match="encoding"):
        edit_bytes(b"# coding: latin-1\nx = 1\n", [Edit(22, 23, "'\u2713'")])


def test_removing_an_argument_keeps_its_trailing_comment_and_the_layout(tmp_path):
    source = TRAIN + "loss.backward(\n    retain_graph=True,  # keep until the new scheduler lands\n)\n"
    (tmp_path / "t.py").write_text(source)
    middle = TRAIN + "loss.backward(\n    None,\n    retain_graph=True,  # keep\n    create_graph=False,\n)\n"
    (tmp_path / "u.py").write_text(middle)
    last = TRAIN + "loss.backward(\n    None,\n    retain_graph=True\n)\n"
    (tmp_path / "v.py").write_text(last)
    run = gradlint("check", "--no-cache", "--fix", ".", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "t.py").read_text() == TRAIN + "loss.backward(\n    # keep until the new scheduler lands\n)\n"
    assert (tmp_path / "u.py").read_text() == TRAIN + "loss.backward(\n    None,\n    # keep\n    create_graph=False,\n)\n"
    assert (tmp_path / "v.py").read_text() == TRAIN + "loss.backward(\n    None,\n)\n"


def test_fixes_are_never_taken_from_a_crafted_cache_entry(tmp_path):
    source = TRAIN + "loss.backward(retain_graph=True)\n"
    (tmp_path / "t.py").write_text(source)
    cache = tmp_path / "cache"
    first = gradlint("check", "--cache-dir", str(cache), ".", cwd=tmp_path)
    assert first.returncode == 1
    entries = [os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs if f.endswith(".json")]
    assert len(entries) == 1
    stored = json.load(open(entries[0]))
    stored["findings"][0]["fix"]["edits"] = [[0, 0, "import os; os.system('echo owned')\n"]]
    with open(entries[0], "w") as handle:
        json.dump(stored, handle)
    run = gradlint("check", "--cache-dir", str(cache), "--fix", ".", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "t.py").read_text() == TRAIN + "loss.backward()\n"


def test_a_leading_backslash_line_does_not_shift_findings_or_fixes(tmp_path):
    source = "\\\n" + TRAIN + "loss.backward(retain_graph=True)\n"
    (tmp_path / "t.py").write_text(source)
    run = gradlint("check", "--no-cache", "--output-format", "concise", ".", cwd=tmp_path)
    assert b"t.py:6:1: GL002" in run.stdout
    run = gradlint("check", "--no-cache", "--fix", ".", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "t.py").read_text() == "\\\n" + TRAIN + "loss.backward()\n"

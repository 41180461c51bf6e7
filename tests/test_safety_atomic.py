"""write_source: a user's file is rewritten only from the bytes the edit was computed from, and
keeps its links, owner, mode and extended attributes; read-only files are refused."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from gradlint.atomic import ReadOnlySource, SourceChanged, sha256, write_source, write_atomic

OLD = b"loss.backward(retain_graph=True)\n"
NEW = b"loss.backward()\n"


def _leftovers(folder) -> list:
    return [name for name in os.listdir(folder) if name.startswith(".gradlint-")]


def test_plain_file_is_swapped_atomically_keeping_mode(tmp_path):
    target = tmp_path / "train.py"
    target.write_bytes(OLD)
    os.chmod(target, 0o640)
    inode = os.stat(target).st_ino
    write_source(str(target), NEW, sha256(OLD))
    assert target.read_bytes() == NEW
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert os.stat(target).st_ino != inode  # a new file swapped in: readers never see half
    assert _leftovers(tmp_path) == []


def test_changed_file_is_not_written(tmp_path):
    target = tmp_path / "train.py"
    target.write_bytes(OLD)
    edited = b"# saved by an editor meanwhile\n" + OLD
    target.write_bytes(edited)
    with pytest.raises(SourceChanged, match="changed since it was linted"):
        write_source(str(target), NEW, sha256(OLD))
    assert target.read_bytes() == edited
    assert _leftovers(tmp_path) == []


def test_second_path_to_the_same_file_is_refused_after_the_first_write(tmp_path):
    real = tmp_path / "real.py"
    real.write_bytes(OLD)
    link = tmp_path / "link.py"
    link.symlink_to("real.py")
    write_source(str(link), NEW, sha256(OLD))
    assert link.is_symlink() and os.readlink(link) == "real.py"  # the link stays a link
    assert real.read_bytes() == NEW
    with pytest.raises(SourceChanged):
        write_source(str(real), b"something else\n", sha256(OLD))
    assert real.read_bytes() == NEW


def test_concurrent_writers_with_one_digest_only_one_wins(tmp_path):
    target = tmp_path / "train.py"
    target.write_bytes(OLD)
    outcomes = []

    def worker(payload: bytes) -> None:
        try:
            write_source(str(target), payload, sha256(OLD))
            outcomes.append(payload)
        except SourceChanged:
            outcomes.append(None)

    threads = [threading.Thread(target=worker, args=(b"x = %d\n" % i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o is not None]
    assert len(winners) == 1
    assert target.read_bytes() == winners[0]


def test_hard_links_survive(tmp_path):
    target = tmp_path / "train.py"
    target.write_bytes(OLD)
    other = tmp_path / "copy.py"
    os.link(target, other)
    write_source(str(target), NEW, sha256(OLD))
    assert target.read_bytes() == NEW and other.read_bytes() == NEW
    assert os.stat(target).st_ino == os.stat(other).st_ino
    assert os.stat(target).st_nlink == 2


def test_read_only_file_is_refused_even_for_root(tmp_path):
    target = tmp_path / "train.py"
    target.write_bytes(OLD)
    os.chmod(target, 0o444)
    with pytest.raises(ReadOnlySource, match="read-only") as info:
        write_source(str(target), NEW, sha256(OLD))
    assert isinstance(info.value, PermissionError)
    assert target.read_bytes() == OLD
    assert _leftovers(tmp_path) == []


def test_extended_attributes_and_owner_are_kept(tmp_path):
    target = tmp_path / "train.py"
    target.write_bytes(OLD)
    has_xattr = hasattr(os, "setxattr")
    if has_xattr:
        try:
            os.setxattr(target, b"user.gradlint-test", b"keep me")
        except OSError:
            has_xattr = False
    if os.geteuid() == 0:
        os.chown(target, 12345, 12346)
    before = os.stat(target)
    write_source(str(target), NEW, sha256(OLD))
    after = os.stat(target)
    assert target.read_bytes() == NEW
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    if has_xattr:
        assert os.getxattr(target, b"user.gradlint-test") == b"keep me"


def test_unwritable_folder_falls_back_to_writing_in_place(tmp_path, monkeypatch):
    import tempfile

    target = tmp_path / "train.py"
    target.write_bytes(OLD)

    def no_temp_files(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", no_temp_files)
    inode = os.stat(target).st_ino
    write_source(str(target), NEW, sha256(OLD))
    assert target.read_bytes() == NEW
    assert os.stat(target).st_ino == inode


def test_write_atomic_still_replaces(tmp_path):
    target = tmp_path / "entry.json"
    write_atomic(str(target), b"{}", mode=0o600)
    assert target.read_bytes() == b"{}"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


def test_add_noqa_that_cannot_write_a_file_exits_1(project, gradlint, monkeypatch):
    from cli_samples import LOOP_WITHOUT_ZERO_GRAD

    path = project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    result = gradlint("check", "--no-cache", "--add-noqa", ".")
    assert result.exit_code == 1
    assert "train.py: noqa directives not added" in result.stderr and "Added 0 noqa directives." in result.stderr
    assert path.read_text() == LOOP_WITHOUT_ZERO_GRAD
    assert [name for name in os.listdir(project.root) if name.startswith(".gradlint-")] == []


def test_fix_of_a_read_only_file_writes_nothing_and_exits_1(project, gradlint):
    source = "import torch\n\nfor x in data:\n    opt.zero_grad()\n    loss = model(x).sum()\n" \
             "    loss.backward(retain_graph=True)\n    opt.step()\n"
    path = project.write("train.py", source)
    os.chmod(path, 0o444)
    result = gradlint("check", "--no-cache", "--fix", ".")
    assert result.exit_code == 1
    assert "train.py: cannot write fixes: read-only file; not modified" in result.stderr
    assert "Fixed" not in result.stderr and "GL002" in result.stdout
    assert path.read_text() == source and stat.S_IMODE(os.stat(path).st_mode) == 0o444


def test_write_atomic_refuses_a_read_only_target(tmp_path):
    target = tmp_path / "baseline.json"
    target.write_bytes(b"old")
    os.chmod(target, 0o444)
    with pytest.raises(ReadOnlySource):
        write_atomic(str(target), b"new")
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []

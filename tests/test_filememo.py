"""analysis.filememo: answers per project file, re-read when the file changes, bounded by count and
by the source bytes behind them (the editor server runs for days)."""

from __future__ import annotations

import os

from gradlint.analysis.filememo import MAX_FILE_BYTES, FileMemo


def _write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_an_answer_is_kept_until_the_file_changes(tmp_path):
    reads = []
    memo = FileMemo(entries=4)
    path = _write(tmp_path / "a.py", "x = 1\n")

    def read(data: bytes) -> bytes:
        reads.append(data)
        return data.upper()

    assert memo.get(path, read, None) == b"X = 1\n"
    assert memo.get(path, read, None) == b"X = 1\n" and len(reads) == 1
    before = os.stat(path).st_mtime_ns
    _write(tmp_path / "a.py", "y = 22\n")
    os.utime(path, ns=(before + 10**9, before + 10**9))
    assert memo.get(path, read, None) == b"Y = 22\n" and len(reads) == 2


def test_unreadable_unparsable_and_too_large_files_answer_unknown(tmp_path):
    memo = FileMemo(entries=4)

    def fails(data: bytes) -> str:
        raise SyntaxError("no")

    assert memo.get(str(tmp_path / "missing.py"), len, -1) == -1
    assert memo.get(_write(tmp_path / "bad.py", "def ("), fails, "unknown") == "unknown"
    big = _write(tmp_path / "big.py", "#" * (MAX_FILE_BYTES + 1))
    assert memo.get(big, len, -1) == -1


def test_least_recently_used_answers_go_past_either_bound(tmp_path):
    paths = [_write(tmp_path / f"m{i}.py", "x" * 100) for i in range(4)]
    by_count = FileMemo(entries=2)
    for path in paths[:3]:
        by_count.get(path, len, 0)
    assert len(by_count) == 2
    by_bytes = FileMemo(entries=10, source_bytes=250)
    by_bytes.get(paths[0], len, 0)
    by_bytes.get(paths[1], len, 0)
    by_bytes.get(paths[0], len, 0)  # used again: now the most recent
    by_bytes.get(paths[2], len, 0)  # 300 bytes: the least recently used (m1) goes
    calls = []
    by_bytes.get(paths[0], lambda data: calls.append(0) or len(data), 0)
    assert calls == [] and len(by_bytes) == 2
    by_bytes.get(paths[1], lambda data: calls.append(1) or len(data), 0)
    assert calls == [1]


def test_the_newest_answer_is_kept_whatever_its_size(tmp_path):
    memo = FileMemo(entries=4, source_bytes=10)
    path = _write(tmp_path / "large.py", "x" * 100)
    memo.get(path, len, 0)
    assert len(memo) == 1


def test_a_project_files_words_are_whole_identifiers_from_code_strings_and_comments(tmp_path):
    from gradlint.analysis.call_sites import mentions

    path = _write(tmp_path / "helpers.py", "def train_step(model):  # calls closure\n    return 'zero_grad'\n")
    for word in ("train_step", "model", "closure", "zero_grad", "def", "return"):
        assert mentions(path, word), word
    # parts of a word, a word with a neighbour's character, and names no ASCII file list holds
    for word in ("train", "step", "train_step(", "rain_step", "zero", "modell", "", "mödel"):
        assert not mentions(path, word), word
    assert not mentions(str(tmp_path / "missing.py"), "model")

"""Line numbers follow Python's tokenizer (only \\n, \\r\\n, \\r end a line), not str.splitlines."""

from __future__ import annotations

import ast
import io
import json

from hypothesis import given
from hypothesis import strategies as st

from cli_samples import LOOP_WITHOUT_ZERO_GRAD
from gradlint import suppression
from gradlint.findings import Finding
from gradlint.lines import line_starts, split_lines, tokenizer_readline

AWKWARD = "\x0c\x0b\x1c\x1d\x1e\x85\u2028\u2029"


@given(st.text(alphabet=st.sampled_from(list("ab \t#\n\r") + list(AWKWARD)), max_size=60))
def test_split_lines_agrees_with_universal_newlines(text):
    expected = io.StringIO(text, newline=None).readlines()  # \n, \r\n, \r only
    assert [line.rstrip("\r\n") for line in split_lines(text, keepends=True)] == \
        [line.rstrip("\n") for line in expected]
    assert "".join(split_lines(text, keepends=True)) == text
    starts = line_starts(text)
    assert len(starts) == max(len(expected), 1)
    for number, line in enumerate(split_lines(text, keepends=True)):
        assert text[starts[number]:].startswith(line)


def test_split_lines_matches_the_ast_line_numbers():
    text = "x = 1\n# \x0c\x0c\x0c form feeds \x85 \u2028\ny = '''a\x0cb\x1c'''\rz = 2\r\nw = 3"
    tree = ast.parse(text)
    lines = split_lines(text)
    for node in tree.body:
        assert lines[node.lineno - 1].startswith(ast.unparse(node.targets[0]))
    assert lines[-1] == "w = 3"


def test_tokenizer_readline_keeps_columns_and_normalises_endings():
    readline = tokenizer_readline("a\rb  # c\r\nd\x0ce\n")
    assert [readline(), readline(), readline(), readline()] == ["a\n", "b  # c\n", "d\x0ce\n", ""]


def _finding(line: int) -> Finding:
    return Finding(code="GL001", message="m", path="t.py", line=line, column=1, end_line=line, end_column=5)


def test_noqa_after_form_feeds_silences_its_own_line():
    text = "# \x0c\x0c\x0c\nloss.backward()  # noqa: GL001\n"
    assert suppression.apply([_finding(2)], text, {"GL001"}, "t.py") == []
    assert suppression.apply([_finding(5)], text, {"GL001"}, "t.py") == [_finding(5)]


def test_noqa_in_a_carriage_return_file_is_on_the_right_line():
    text = "x = 1\rloss.backward()  # noqa: GL001\ry = 2\r"
    assert suppression.apply([_finding(2)], text, {"GL001"}, "t.py") == []
    assert suppression.apply([_finding(1)], text, {"GL001"}, "t.py") == [_finding(1)]


def test_full_excerpt_shows_the_reported_line(project, gradlint):
    source = "# header\x0c\x0c\x0c with form feeds\n" + LOOP_WITHOUT_ZERO_GRAD
    project.write("train.py", source)
    report = json.loads(gradlint("check", "--output-format", "json", ".").stdout)
    line = report[0]["line"]
    assert line == 8  # the header is one line to Python
    full = gradlint("check", "--output-format", "full", ".").stdout
    assert f"{line} |     loss.backward()" in full

"""noqa comments: inline (blanket and by code), file-level, and GL100 unused-noqa."""

from __future__ import annotations

import textwrap

import pytest

from gradlint import suppression
from gradlint.findings import Finding

ENABLED = {"GL000", "GL001", "GL002", "GL003"}


def finding(code: str, line: int) -> Finding:
    return Finding(code=code, message="m", path="t.py", line=line, column=5, end_line=line, end_column=9)


def kept(text: str, findings, enabled=ENABLED):
    return suppression.apply(list(findings), textwrap.dedent(text), enabled, "t.py")


@pytest.mark.parametrize(
    "comment",
    ["# noqa", "# NOQA", "#noqa", "# noqa: GL001", "# noqa:GL001", "# noqa: GL002, GL001",
     "# noqa: GL002 GL001", "# noqa: gl001", "# noqa: GL00", "# type: ignore  # noqa: GL001",
     "# noqa: E501,GL001 because reasons"],
)
def test_inline_forms_silence_the_finding(comment):
    text = f"x = 1\nloss.backward()  {comment}\n"
    assert kept(text, [finding("GL001", 2)]) == []


@pytest.mark.parametrize("comment", ["# noqa: GL002", "# noqa: E501", "# noqa: GL0010"])
def test_other_codes_do_not_silence(comment):
    text = f"loss.backward()  {comment}\n"
    assert kept(text, [finding("GL001", 1)]) == [finding("GL001", 1)]


def test_only_the_start_line_counts():
    text = "loss.backward(  # noqa: GL001\n)\nopt.step()  # noqa\n"
    assert kept(text, [finding("GL001", 2)]) == [finding("GL001", 2)]


def test_noqa_inside_a_string_is_not_a_comment():
    text = 'loss.backward(msg="# noqa")\n'
    assert kept(text, [finding("GL001", 1)]) == [finding("GL001", 1)]


def test_file_level_blanket_and_codes():
    blanket = "# gradlint: noqa\nloss.backward()\n"
    assert kept(blanket, [finding("GL001", 2), finding("GL003", 2)]) == []
    some = "#  GRADLINT: NOQA: GL003\nloss.backward()\n"
    assert kept(some, [finding("GL001", 2), finding("GL003", 2)]) == [finding("GL001", 2)]


def test_file_level_must_be_on_its_own_line_and_flake8_is_not_honoured():
    trailing = "x = 1  # gradlint: noqa\nloss.backward()\n"
    assert kept(trailing, [finding("GL001", 2)]) == [finding("GL001", 2)]
    flake8 = "# flake8: noqa\nloss.backward()\n"
    assert kept(flake8, [finding("GL001", 2)]) == [finding("GL001", 2)]


def test_parse_errors_are_never_silenced():
    text = "# gradlint: noqa\nx = (  # noqa\n"
    assert kept(text, [finding("GL000", 2)]) == [finding("GL000", 2)]


def test_unused_noqa_reported_when_gl100_enabled():
    text = "a = 1  # noqa: GL001\nloss.backward()  # noqa: GL001, GL003\nb = 2  # noqa\nc = 3  # noqa: E501\n"
    out = kept(text, [finding("GL001", 2)], ENABLED | {"GL100"})
    unused = [f for f in out if f.code == "GL100"]
    assert [(f.line, f.column) for f in unused] == [(1, 8), (2, 18)]
    assert "GL001" in unused[0].message and "GL003" in unused[1].message
    assert "GL001" not in unused[1].message  # GL001 was used on line 2
    assert all(f.severity == "warning" for f in unused)


def test_unused_noqa_for_unknown_and_disabled_codes():
    text = "a = 1  # noqa: GL999\nb = 2  # noqa: GL002\n"
    out = kept(text, [], {"GL000", "GL001", "GL100"})
    assert len(out) == 1 and "GL999 (unknown code)" in out[0].message  # GL002 is not enabled: silent


def test_unused_noqa_not_reported_when_gl100_disabled():
    assert kept("a = 1  # noqa: GL001\n", []) == []


def test_file_level_gl100_silences_unused_reports():
    text = "# gradlint: noqa: GL100\na = 1  # noqa: GL001\n"
    assert kept(text, [], ENABLED | {"GL100"}) == []


def test_untokenizable_text_keeps_findings():
    text = "loss.backward()  # noqa: GL001\nx = '''\n"
    assert kept(text, [finding("GL001", 1)]) == []


def test_add_noqa_appends_merges_and_skips_unsafe_lines():
    from gradlint.fixes import add_noqa

    text = textwrap.dedent('''\
        a.backward()
        b.backward()  # why
        c.backward()  # noqa: E501
        d.backward()  # noqa
        e = """
        text"""; f.backward()
        g = h + \\
            i.backward()
        ''')
    found = [finding("GL001", n) for n in (1, 2, 3, 4, 5, 7)] + [finding("GL003", 1), finding("GL000", 8)]
    new, count = add_noqa(text, found)
    lines = new.splitlines()
    assert count == 3
    assert lines[0] == "a.backward()  # noqa: GL001, GL003"
    assert lines[1] == "b.backward()  # why  # noqa: GL001"
    assert lines[2] == "c.backward()  # noqa: E501, GL001"
    assert lines[3] == "d.backward()  # noqa"  # blanket already covers it
    assert lines[4] == 'e = """' and lines[6] == "g = h + \\"  # inside a string / continued: untouched
    assert kept(new, [finding("GL001", 1), finding("GL003", 1), finding("GL001", 2), finding("GL001", 3)]) == []

"""Generated programs never crash the linter: no exception out of lint_source (which is what the
CLI turns into exit status 2), only well-formed findings. hypothesmith writes syntactically valid
Python from the grammar; some of it is also dropped into a training-loop template, so the rules'
loop analysis sees odd statements between backward and step."""

from __future__ import annotations

import textwrap

import hypothesmith
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gradlint.config import load_settings
from gradlint.engine import lint_source
from gradlint.findings import RULES
from gradlint.lines import split_lines

# hypothesmith compiles what it generates; CPython warns about things like `1()` in it.
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")

SETTINGS = load_settings(".", isolated=True, overrides={"select": ["ALL"]})
FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

LOOP = """\
import torch

model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step, batch in enumerate(data):
    loss = model(batch).sum()
{body}
    loss.backward(retain_graph=True)
    if step % 2:
{inner}
    opt.step()
"""


def check_findings(text: str) -> None:
    findings = lint_source(text, "generated.py", SETTINGS)
    lines = max(len(split_lines(text)), 1)  # as Python's tokenizer numbers lines (a lone \r ends one)
    for finding in findings:
        assert finding.code in RULES
        assert finding.message and "\n" not in finding.message
        assert 1 <= finding.line <= finding.end_line <= lines + 1
        assert finding.column >= 1 and finding.end_column >= 1
    assert findings == lint_source(text, "generated.py", SETTINGS)  # deterministic


@FAST
@given(hypothesmith.from_grammar())
@example("loss.backward()\n")
@example("for x in d:\n    l.backward()\n    o.step()\n")
def test_generated_programs_never_crash(source):
    check_findings(source)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(hypothesmith.from_grammar(), st.sampled_from(["    ", "        "]))
@example("#\r#\r#", "    ")
def test_generated_code_inside_a_training_loop_never_crashes(source, _indent):
    body = textwrap.indent(source, "    ") or "    pass"
    inner = textwrap.indent(source, "        ") or "        pass"
    if not body.strip():
        body = "    pass"
    if not inner.strip():
        inner = "        pass"
    check_findings(LOOP.format(body=body.rstrip("\n"), inner=inner.rstrip("\n")))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(list("()[]{}:=.,\n \t#'\"\\abx0") + ["backward", "step", "for ", "if "]),
                max_size=60).map("".join))
def test_arbitrary_text_never_crashes(text):
    check_findings(text)

"""pytest plugin: `pytest --gradlint` traces the whole test session with gradlint's runtime tracer.

Registered through the `pytest11` entry point, so pytest loads it in *every* session: at import it
defines hooks only; torch and the tracer are imported once `--gradlint` is given.
"""

from __future__ import annotations


def pytest_addoption(parser) -> None:
    group = parser.getgroup("gradlint", "gradlint runtime tracer")
    group.addoption(
        "--gradlint",
        action="store_true",
        default=False,
        help="trace gradient hygiene (zero_grad, retain_graph, non-scalar backward) during the tests "
        "and fail the session on confirmed findings",
    )

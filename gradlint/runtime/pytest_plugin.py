"""pytest plugin: `pytest --gradlint` traces the whole test session with gradlint's runtime tracer.

Registered through the `pytest11` entry point, so pytest loads it in *every* session: at import it
defines hooks only; torch and the tracer are imported once `--gradlint` is given. With the option,
the session is traced from configuration to the end, the report (static findings of the files
that ran, with runtime verdicts) is printed in the terminal summary, and a session that passed
fails when a finding is confirmed.
"""

from __future__ import annotations

_TRACE_KEY = "_gradlint_trace"


def pytest_addoption(parser) -> None:
    group = parser.getgroup("gradlint", "gradlint runtime tracer")
    group.addoption(
        "--gradlint",
        action="store_true",
        default=False,
        help="trace gradient hygiene (zero_grad, retain_graph, non-scalar backward) during the tests "
        "and fail the session on confirmed findings",
    )


def pytest_configure(config) -> None:
    if not config.getoption("gradlint", default=False):
        return
    from gradlint.runtime.api import Trace

    root = str(config.rootpath) if hasattr(config, "rootpath") else str(config.rootdir)
    traced = Trace(roots=[root], cwd=root)
    traced.start()
    setattr(config, _TRACE_KEY, traced)


def pytest_sessionfinish(session, exitstatus) -> None:
    traced = getattr(session.config, _TRACE_KEY, None)
    if traced is None:
        return
    traced.stop()
    try:
        confirmed = traced.confirmed()
    except Exception as err:  # a linting problem must not hide the test results
        session.config._gradlint_error = f"{type(err).__name__}: {err}"
        return
    if confirmed and int(exitstatus) == 0:
        session.exitstatus = 1  # pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config) -> None:
    traced = getattr(config, _TRACE_KEY, None)
    if traced is not None:
        traced.stop()  # idempotent: makes sure nothing stays patched after an aborted session


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    traced = getattr(config, _TRACE_KEY, None)
    if traced is None:
        return
    terminalreporter.section("gradlint")
    error = getattr(config, "_gradlint_error", None)
    if error:
        terminalreporter.write_line(f"gradlint: could not produce the report: {error}")
        return
    from gradlint.runtime.api import summary

    findings = traced.findings()
    if findings:
        terminalreporter.write(traced.report())
    else:
        terminalreporter.write_line(summary(traced.observations))
    confirmed = traced.confirmed()
    if confirmed:
        terminalreporter.write_line(
            f"gradlint: {len(confirmed)} confirmed finding{'s' if len(confirmed) != 1 else ''}: session failed",
            red=True,
        )

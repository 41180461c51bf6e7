"""The runtime hook: run training under a tracer that confirms or refutes gradlint's findings.

Importing this package does not import torch; tracing does. Entry points:
`gradlint.runtime.trace()` (Python API), `gradlint run` (gradlint.runtime.cli), `pytest --gradlint`
(gradlint.runtime.pytest_plugin).
"""

from __future__ import annotations


def trace(**options):
    """Trace a block: `with gradlint.runtime.trace() as t: train()`, then `t.findings()` / `t.report()`."""
    from gradlint.runtime.api import trace as _trace

    return _trace(**options)


__all__ = ["trace"]

"""`python -m gradlint` and the `gradlint` command.

A warm `gradlint check` (the result cache filled, nothing changed since the same command last
ran) is answered from its manifest by gradlint/warm.py before click, LibCST or the engine are
imported; every other run goes to the click command line (gradlint/cli.py), and a `check` that
may stand for the next identical one is recorded (gradlint/warm_record.py).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Run the command line in sys.argv; exits the process with its status."""
    argv = sys.argv[1:]
    recorder = None
    if argv[:1] == ["check"]:
        from gradlint import warm

        key = warm.run_key(argv)
        if key is not None:
            status = warm.serve(argv, key)
            if status is not None:
                _leave(status)
            from gradlint import warm_record

            recorder = warm_record.start(argv, key)
    from gradlint.cli import main as cli

    if recorder is None:
        cli()
        return
    try:
        cli()
    except SystemExit as stop:
        recorder.finish(stop.code)
        raise
    finally:
        recorder.restore()


def _leave(status: int) -> None:
    """Exit after a replayed run. When gradlint is the program itself (`python -m gradlint`, the
    `gradlint` script) the interpreter's teardown is skipped (a few milliseconds, a tenth of a
    warm run): everything was written and flushed, and nothing else ran. Called from Python, it
    raises SystemExit as usual."""
    module = sys.modules.get("__main__")
    spec = getattr(module, "__spec__", None)
    program = spec.name == "gradlint.__main__" if spec is not None else os.path.basename(sys.argv[0]) == "gradlint"
    if program:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        else:
            os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    main()

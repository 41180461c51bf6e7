"""`gradlint run [OPTIONS] SCRIPT [ARGS]...` and `gradlint run [OPTIONS] -m MODULE [ARGS]...`.

Runs the program as `python` would (sys.argv, `__main__`, sys.path[0]) under the tracer; its output
and traceback appear as usual, then the report: the static findings of the files that ran joined
with the runtime verdicts. Options after SCRIPT belong to the script.

Exit status: 1 when a finding is confirmed or seen at runtime, or the script failed; 0 otherwise
(`SystemExit(0)` is success); 2 for usage or configuration errors. Importing this module does not
import torch.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import List, Optional, Sequence, Tuple

import click

from gradlint.options import common_options, emit_report, fail, resolve_output_format, settings_from_options

_GRADLINT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ours(filename: str) -> bool:
    """Frames of gradlint, runpy and click: hidden from the script's traceback, as python hides its own."""
    if filename.startswith("<frozen runpy"):
        return True
    real = os.path.abspath(filename)
    if real.startswith(_GRADLINT_DIR + os.sep):
        return True
    name = os.path.basename(real)
    parent = os.path.basename(os.path.dirname(real))
    return name == "runpy.py" or (parent == "click")


def _print_traceback(error: BaseException) -> None:
    """Print the script's exception like python does: the frames from the script inward."""
    tb = error.__traceback__
    while tb is not None and _ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb)


def _exit_code(error: SystemExit) -> Tuple[int, bool]:
    """(status, failed) for a SystemExit raised by the script, printing a message code as python does."""
    code = error.code
    if code is None:
        return 0, False
    if isinstance(code, int):
        return code, code != 0
    print(code, file=sys.stderr)
    return 1, True


class _Program:
    """What to run and how python would set it up."""

    def __init__(self, script: Optional[str], module: Optional[str], args: Sequence[str]) -> None:
        self.script = script
        self.module = module
        self.args = list(args)

    def check(self) -> None:
        """Usage errors before anything runs (exit 2)."""
        if self.script is not None and not os.path.exists(self.script):
            fail(f"can't open file {self.script!r}: no such file")  # a folder or zip with __main__.py is fine
        if self.module is not None:
            import importlib.util

            try:
                spec = importlib.util.find_spec(self.module)
            except (ImportError, ValueError) as err:
                fail(f"module {self.module!r}: {err}")
            if spec is None:
                fail(f"no module named {self.module!r}")

    def roots(self) -> List[str]:
        roots = [os.getcwd()]
        if self.script is not None:
            roots.append(os.path.dirname(os.path.realpath(self.script)))
        return roots

    def files(self) -> List[str]:
        if self.script is not None:
            return [os.path.realpath(self.script)]
        return []

    def run(self) -> Tuple[int, bool]:
        """Run to completion; returns (exit status python would give, failed?)."""
        import runpy

        saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else None
        try:
            if self.script is not None:
                sys.argv = [self.script] + self.args
                head = os.path.dirname(os.path.realpath(self.script))
            else:
                sys.argv = [self.module] + self.args  # run_module puts the module's file in argv[0]
                head = os.getcwd()
            if sys.path:
                sys.path[0] = head
            else:
                sys.path.insert(0, head)
            try:
                if self.script is not None:
                    runpy.run_path(self.script, run_name="__main__")
                else:
                    runpy.run_module(self.module, run_name="__main__", alter_sys=True)
            except SystemExit as error:
                return _exit_code(error)
            except KeyboardInterrupt as error:
                _print_traceback(error)
                return 130, True
            except BaseException as error:  # the script's own failure: shown, then reported on
                _print_traceback(error)
                return 1, True
            return 0, False
        finally:
            sys.argv = saved_argv
            if saved_path0 is not None and sys.path:
                sys.path[0] = saved_path0
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass


@click.command(
    "run",
    context_settings={
        "allow_interspersed_args": False,  # everything after SCRIPT is the script's
        "ignore_unknown_options": True,
        "help_option_names": ["-h", "--help"],
    },
)
@click.option("-m", "module", metavar="MODULE", default=None,
              help="Run a library module as a script, like python -m (the arguments follow it).")
@common_options
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="SCRIPT [ARGS]...")
def run_command(module, argv, select, ignore, extend_select, output_format, output, exit_zero, config,
                isolated) -> None:
    """Run a training script under the runtime tracer: confirm or refute findings by what autograd
    and the optimizers actually do.

    Distributed: `torchrun --nproc_per_node N -m gradlint run train.py` traces every rank and
    rank 0 prints one merged report.
    """
    if module is None and not argv:
        raise click.UsageError("give a SCRIPT to run, or -m MODULE")
    script = None if module is not None else argv[0]
    program = _Program(script, module, argv if module is not None else argv[1:])
    settings = settings_from_options(select=select, ignore=ignore, extend_select=extend_select, config=config,
                                     isolated=isolated)
    fmt = resolve_output_format(output_format, settings)
    program.check()
    sys.exit(_trace_and_report(program, settings, fmt, output, exit_zero))


def _trace_and_report(program: _Program, settings, fmt: str, output: Optional[str], exit_zero: bool) -> int:
    from gradlint.runtime import distributed
    from gradlint.runtime.api import Trace, imported_project_files, summary
    from gradlint.runtime.verdicts import failing

    rank = distributed.context()
    roots = program.roots()
    traced = Trace(settings=settings, roots=roots, files=program.files())
    try:
        traced.start()
    except ImportError as err:
        fail(f"gradlint run needs PyTorch: {err}")
    try:
        status, failed = program.run()
    finally:
        obs = traced.stop()
    traced.extra_files.extend(imported_project_files(roots))

    if rank is not None:
        if rank.rank != 0:
            distributed.write(rank, obs, failed)
            return 1 if failed else 0
        merged, failed_ranks, missing = distributed.gather(rank, obs)
        traced.use_observations(merged)
        if failed_ranks:
            failed = True
            click.echo(f"gradlint run: rank{'s' if len(failed_ranks) > 1 else ''} "
                       f"{', '.join(map(str, failed_ranks))} failed", err=True)
        if missing:
            click.echo(f"gradlint run: no report from rank{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(map(str, missing))}; the report covers the others", err=True)

    findings = traced.findings()
    source_of = _source_reader()
    emit_report(findings, output_format=fmt, output=output, exit_zero=True, settings=settings,
                files_checked=len(traced.files()), source_of=source_of)
    if fmt in ("full", "concise"):
        click.echo(summary(traced.observations), err=True)
    if failed:
        return 1
    if failing(findings) and not exit_zero:
        return 1
    return 0


def _source_reader():
    from gradlint.runtime.api import _read_source

    return _read_source(os.getcwd())

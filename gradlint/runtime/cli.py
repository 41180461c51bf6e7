"""`gradlint run [OPTIONS] SCRIPT [ARGS]...` and `gradlint run [OPTIONS] -m MODULE [ARGS]...`.

Runs the program as `python` would (sys.argv, `__main__`, sys.path[0]) under the tracer; its output
and traceback appear as usual, then the report: the static findings of the files that ran joined
with the runtime verdicts. Options after SCRIPT belong to the script.

Exit status: the script's own status when it failed (`sys.exit(3)` gives 3, an uncaught exception 1,
Ctrl-C 130); otherwise 1 when a finding is confirmed or seen at runtime, else 0; 2 for usage or
configuration errors. The summary then says how the script ended. Importing this module does not
import torch.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Set, Tuple

import click

from gradlint.options import (
    cache_dir_override,
    cache_options,
    cache_usable,
    common_options,
    emit_report,
    fail,
    resolve_output_format,
    settings_from_options,
)
from gradlint.runtime.frames import FLOOR_CODES

if TYPE_CHECKING:  # pragma: no cover - types only
    from gradlint.runtime.distributed import RankContext

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


def _strip_ours(exc: traceback.TracebackException, seen: Set[int]) -> None:
    """Drop gradlint's, runpy's and click's frames from a formatted exception and its chain: the
    tracer's wrappers sit between the user's call and torch, and are no part of the user's error."""
    if id(exc) in seen:
        return
    seen.add(id(exc))
    exc.stack = traceback.StackSummary.from_list([f for f in exc.stack if not _ours(f.filename)])
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None:
            _strip_ours(linked, seen)
    for inner in getattr(exc, "exceptions", None) or ():
        _strip_ours(inner, seen)


def _print_traceback(error: BaseException) -> None:
    """Print the script's exception like python does, without our own frames."""
    try:
        formatted = traceback.TracebackException(type(error), error, error.__traceback__)
        _strip_ours(formatted, set())
        text = "".join(formatted.format())
    except Exception:  # never lose the user's error over formatting it
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    _stream("stderr").write(text)


def _thread_excepthook(args: Any) -> None:
    """threading.excepthook while the script runs: what python prints for an exception that ends a
    thread ("Exception in thread NAME:" and its traceback), without our own frames."""
    import threading

    if args.exc_type is SystemExit:
        return  # python ends the thread silently
    try:
        thread = args.thread
        name = thread.name if thread is not None else threading.get_ident()
        stream = _stream("stderr")
        stream.write(f"Exception in thread {name}:\n")
        error = args.exc_value if args.exc_value is not None else args.exc_type()
        formatted = traceback.TracebackException(args.exc_type, error, args.exc_traceback)
        _strip_ours(formatted, set())
        stream.write("".join(formatted.format()))
        stream.flush()
    except Exception:  # never lose the user's error over formatting it
        threading.__excepthook__(args)


def _exit_code(error: SystemExit) -> Tuple[int, bool]:
    """(status, failed) for a SystemExit raised by the script, printing a message code as python does."""
    code = error.code
    if code is None:
        return 0, False
    if isinstance(code, int):
        return code, code != 0
    print(code, file=_stream("stderr"))
    return 1, True


def _closed(stream: Any) -> bool:
    try:
        return stream is None or bool(stream.closed)
    except Exception:
        return True


def _stream(name: str):
    """sys.stdout / sys.stderr, reopened when the script closed it (the report must still go out)."""
    current = getattr(sys, name)
    if not _closed(current):
        return current
    fd = 1 if name == "stdout" else 2
    original = getattr(sys, f"__{name}__", None)
    replacement: Any = original if not _closed(original) else None
    if replacement is None:
        try:
            replacement = io.TextIOWrapper(io.FileIO(os.dup(fd), "w"), encoding="utf-8", errors="backslashreplace",
                                           line_buffering=True)
        except (OSError, ValueError):
            other = sys.stderr if name == "stdout" else sys.stdout
            replacement = other if not _closed(other) else io.StringIO()  # nowhere left to write
    setattr(sys, name, replacement)
    return replacement


def _outcome(status: int, failed: bool, error: Optional[BaseException]) -> Optional[str]:
    """How the script ended, for the summary, when it failed."""
    if not failed:
        return None
    if error is not None and not isinstance(error, SystemExit):
        return f"the script raised {type(error).__name__}"
    return f"the script exited with status {status}"


def _call(function, *args, **kwargs):
    return function(*args, **kwargs)


# Words of CPython's frame data stack (3.11+) left free above the frame that starts the script.
# That stack grows in chunks (16 KiB at first); a chunk is mapped when a call does not fit in the
# current one and unmapped when that call returns. `gradlint run` starts the script some 20
# frames deeper than `python script.py` would, which moved a chunk boundary into the depth that
# torch's imports and training steps call through over and over: measured on
# benchmarks/bench_runtime.py --process, 18,000 more page faults and 0.13 s more system time per
# run. A frame whose code declares this large a value stack opens a fresh 2 MiB chunk with about
# 1 MiB free above it, so the script's calls stay inside it; pages nobody touches cost nothing.
ROOMY_STACK_WORDS = 130_100

_roomy_call = _call
if sys.implementation.name == "cpython" and sys.version_info >= (3, 11):
    _roomy_call = type(_call)(_call.__code__.replace(co_stacksize=ROOMY_STACK_WORDS), _call.__globals__,
                              "_roomy_call")


# Call paths are told apart by the frames above the script's start only (runtime/frames.py).
FLOOR_CODES.update({id(code): code for code in (_call.__code__, _roomy_call.__code__)})


def on_roomy_stack(function, *args, **kwargs):
    """`function(*args, **kwargs)` from the base of a fresh frame-stack chunk (see
    ROOMY_STACK_WORDS); on Python before 3.11 and other interpreters, a plain call."""
    return _roomy_call(function, *args, **kwargs)


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

            # As `python -m` finds it: the current folder first. Only the top-level package is
            # looked up here (finding `pkg.sub` would import `pkg`, untraced, before the run).
            top = self.module.split(".", 1)[0]
            saved = sys.path[:]
            sys.path.insert(0, os.getcwd())
            try:
                spec = importlib.util.find_spec(top)
            except (ImportError, ValueError) as err:
                fail(f"module {self.module!r}: {err}")
            finally:
                sys.path[:] = saved
            if spec is None:
                fail(f"no module named {top!r}")

    def roots(self) -> List[str]:
        roots = [os.getcwd()]
        if self.script is not None:
            roots.append(os.path.dirname(os.path.realpath(self.script)))
        return roots

    def files(self) -> List[str]:
        if self.script is not None:
            return [os.path.realpath(self.script)]
        return []

    def run(self) -> Tuple[int, bool, Optional[str]]:
        """Run to completion; returns (exit status python would give, failed?, how it ended when it
        failed)."""
        status, failed, error = self._run()
        for name in ("stdout", "stderr"):
            _stream(name)  # a script that closed them must not take the report down
        return status, failed, _outcome(status, failed, error)

    def _run(self) -> Tuple[int, bool, Optional[BaseException]]:
        import runpy
        import threading

        saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else None
        saved_hook = threading.excepthook
        if saved_hook is threading.__excepthook__:  # a hook someone installed is left alone
            threading.excepthook = _thread_excepthook
        try:
            if self.script is not None:
                sys.argv = [self.script] + self.args
                head = os.path.dirname(os.path.realpath(self.script))
            else:
                sys.argv = [self.module or ""] + self.args  # run_module puts the module's file in argv[0]
                head = os.getcwd()
            if sys.path:
                sys.path[0] = head
            else:
                sys.path.insert(0, head)
            try:
                if self.script is not None:
                    # As python names it (3.9+): the script's code and __file__ carry its absolute
                    # path, so a script that changes folder still points at itself (argv keeps
                    # the path as given).
                    on_roomy_stack(runpy.run_path, os.path.abspath(self.script), run_name="__main__")
                else:
                    on_roomy_stack(runpy.run_module, self.module or "", run_name="__main__", alter_sys=True)
            except SystemExit as error:
                status, failed = _exit_code(error)
                return status, failed, error
            except KeyboardInterrupt as error:
                _print_traceback(error)
                return 130, True, error
            except BaseException as error:  # the script's own failure: shown, then reported on
                _print_traceback(error)
                return 1, True, error
            return 0, False, None
        finally:
            sys.argv = saved_argv
            if threading.excepthook is _thread_excepthook:
                threading.excepthook = saved_hook
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
@cache_options
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="SCRIPT [ARGS]...")
def run_command(module, argv, select, ignore, extend_select, output_format, output, exit_zero, config,
                isolated, no_cache, cache_dir) -> None:
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
                                     isolated=isolated, overrides={"cache-dir": cache_dir_override(cache_dir)})
    fmt = resolve_output_format(output_format, settings)
    program.check()
    use_cache = cache_usable(settings, no_cache)
    warm = None
    from gradlint.runtime import distributed

    rank = distributed.context()
    if use_cache and script is not None and (rank is None or rank.rank == 0) and not _cached(script, settings):
        # rank 0 reports; a rerun of an unchanged script finds its findings cached: no child
        options = [*(f"--select={v}" for v in select), *(f"--ignore={v}" for v in ignore),
                   *(f"--extend-select={v}" for v in extend_select)]
        options += [f"--config={config}"] if config else []
        options += ["--isolated"] if isolated else []
        options += [f"--cache-dir={cache_dir_override(cache_dir)}"] if cache_dir else []
        warm = _CacheWarmer(script, options)
    sys.exit(_trace_and_report(program, settings, fmt, output, exit_zero, rank, use_cache, warm))


def _cached(script: str, settings) -> bool:
    from gradlint.engine import cached

    return cached(os.path.abspath(script), settings)  # a folder or zip to run is never cached


class _CacheWarmer:
    """`gradlint check SCRIPT` in a child process at the lowest priority while the script trains,
    filling the result cache so the static pass after the run finds the script's findings ready: on
    a machine with a spare core the static analysis costs the run nothing. The report never depends on it: whatever the
    child did not finish (or if it could not start) the static pass computes itself."""

    WAIT_S = 120.0  # at most this long for a child still analysing when the script ends

    def __init__(self, script: str, options: Sequence[str]) -> None:
        self.child: Any = None
        if os.environ.get("GRADLINT_NO_CACHE_WARMER"):
            return
        import subprocess

        env = dict(os.environ)
        for name in ("RANK", "WORLD_SIZE", "GITHUB_ACTIONS", "GRADLINT_OUTPUT_FORMAT"):
            env.pop(name, None)
        command = [sys.executable, "-m", "gradlint", "check", "--quiet", "--exit-zero", "--jobs=1",
                   "--output-format=concise", *options, "--", script]
        try:
            self.child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, env=env, close_fds=True)
        except (OSError, ValueError):
            self.child = None
            return
        # The lowest priority: where the training uses every core (torch's default thread count),
        # the child takes only time the training leaves idle, and runs at full speed once it ends.
        if hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, self.child.pid, 19)
            except OSError:
                pass

    def finish(self) -> None:
        """Wait for the child (bounded); a child still running then is stopped."""
        child, self.child = self.child, None
        if child is None:
            return
        import subprocess

        try:
            child.wait(timeout=self.WAIT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _trace_and_report(program: _Program, settings, fmt: str, output: Optional[str], exit_zero: bool,
                      rank: Optional[RankContext] = None, use_cache: bool = False,
                      warm: Optional[_CacheWarmer] = None) -> int:
    from gradlint.runtime.api import Trace

    roots = program.roots()
    traced = Trace(settings=settings, roots=roots, files=program.files(), use_cache=use_cache)
    try:
        traced.start()
    except ImportError as err:
        fail(f"gradlint run needs PyTorch: {err}")

    def report(status: int, failed: bool, outcome: Optional[str]) -> int:
        obs = traced.stop()
        with _in_folder(roots[0]):  # the report names paths from where the run started
            return _report(roots, traced, obs, status, failed, outcome, settings, fmt, output, exit_zero,
                           rank, warm)

    with _reporting_on_hard_exit(report):
        try:
            status, failed, outcome = program.run()
        finally:
            traced.stop()
    return report(status, failed, outcome)


@contextlib.contextmanager
def _reporting_on_hard_exit(report):
    """While the script runs, `os._exit(code)` in this process (a script that skips interpreter
    shutdown, say to avoid hanging DataLoader workers) first writes the report, then exits with the
    status `report(status, failed, outcome)` gives, as `sys.exit(code)` would have. A forked child
    (a DataLoader or multiprocessing worker) exits as it asked, untouched."""
    real_exit = os._exit
    main_pid = os.getpid()
    reported = []

    def exit_after_report(code: int) -> None:
        if os.getpid() != main_pid or reported:
            real_exit(code)
        reported.append(code)
        status = code
        try:
            status, failed = _exit_code(SystemExit(code))
            status = report(status, failed, _outcome(status, failed, SystemExit(code)))
        except BaseException:  # never keep a process from exiting as it asked
            pass
        for name in ("stdout", "stderr"):
            try:
                _stream(name).flush()
            except Exception:
                pass
        real_exit(status)

    os._exit = exit_after_report  # type: ignore[assignment]
    try:
        yield
    finally:
        if os._exit is exit_after_report:
            os._exit = real_exit


@contextlib.contextmanager
def _in_folder(folder: str):
    """Work in `folder`, then go back to the folder the script left the process in (its atexit
    handlers run there after the report, as they would have without gradlint)."""
    try:
        left_in = os.getcwd()
    except OSError:
        left_in = None
    try:
        os.chdir(folder)
    except OSError:
        pass
    try:
        yield
    finally:
        if left_in is not None:
            try:
                os.chdir(left_in)
            except OSError:
                pass


def _report(roots: List[str], traced, obs, status: int, failed: bool, outcome: Optional[str], settings,
            fmt: str, output: Optional[str], exit_zero: bool, rank: Optional[RankContext],
            warm: Optional[_CacheWarmer]) -> int:
    from gradlint.options import summary_line
    from gradlint.runtime import distributed
    from gradlint.runtime.api import imported_project_files, summary
    from gradlint.runtime.verdicts import failing

    traced.extra_files.extend(imported_project_files(roots))

    if rank is not None:
        if rank.rank != 0:
            distributed.write(rank, obs, failed)
            return (status or 1) if failed else 0
        merged, failed_ranks, missing = distributed.gather(rank, obs)
        traced.use_observations(merged)
        if failed_ranks:
            if not failed:
                ranks = ", ".join(map(str, failed_ranks))
                status, outcome = 1, f"rank{'s' if len(failed_ranks) > 1 else ''} {ranks} failed"
            failed = True
            click.echo(f"gradlint run: rank{'s' if len(failed_ranks) > 1 else ''} "
                       f"{', '.join(map(str, failed_ranks))} failed", err=True)
        if missing:
            click.echo(f"gradlint run: no report from rank{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(map(str, missing))}; the report covers the others", err=True)

    if warm is not None:
        warm.finish()
    findings = traced.findings()
    source_of = _source_reader()
    files_checked = len(traced.files())
    # A failed script never gets "All checks passed": the summary says how it ended instead.
    emit_report(findings, output_format=fmt, output=output, exit_zero=True, settings=settings,
                files_checked=files_checked, source_of=source_of, quiet=failed)
    if failed and findings and fmt == "full":
        click.echo(summary_line(findings, files_checked), err=True)
    if fmt in ("full", "concise"):
        click.echo(summary(traced.observations, outcome), err=True)
    if failed:
        return status if status else 1
    if failing(findings) and not exit_zero:
        return 1
    return 0


def _source_reader():
    from gradlint.runtime.api import _read_source

    return _read_source(os.getcwd())

"""Work a process can do beside its main thread, when it owns the cores to do so.

Why: a lone patient's detection job owns both cores, yet its main thread leaves one mostly idle while it
imports MONAI, registers the follow-up's T1/T2/DWI or encodes DICOM, work that needs nothing detection finds;
SimpleITK and torch release the GIL, so a second thread overlaps it (docs/benchmarks.md "Session 13").  A job
given one thread (a cohort's detection jobs share the machine) runs the same tasks in turn: a thread there
would only contend with the other jobs.  Both ways the caller gets Futures, whose ``result()`` re-raises.
Python-bound work (the report's PDF and DICOM) goes to a forked child process instead (``beside``): a thread
there would only take turns with the main one under the GIL (docs/benchmarks.md "Session 16").
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future, ThreadPoolExecutor


def cores_owned() -> int:
    """The cores this process may keep busy: the workflow rule's ``threads`` (each exports OMP_NUM_THREADS),
    else the CPUs it may run on."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class InTurn(Executor):
    """An executor that runs each task at once in the caller's thread, keeping its result or error."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        f: Future = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # kept for .result(), as a thread pool would
            f.set_exception(exc)
        return f


def worker(name: str) -> Executor:
    """One background thread (tasks run in submission order) when the process owns more than one core, else
    ``InTurn``. Call ``shutdown(wait=False)`` after the last submit: the thread ends with its tasks."""
    return ThreadPoolExecutor(1, thread_name_prefix=name) if cores_owned() > 1 else InTurn()


class Beside:
    """Work running in a forked child process (``beside``); ``wait()`` joins it and re-raises its error.
    As a context manager it is waited for on leaving the block; when the block itself fails, the child is
    still waited for (never left writing into outputs the caller then clears) and the block's error is the one
    raised."""

    def __init__(self, process=None, reader=None, error: BaseException | None = None):
        self._process, self._reader, self._error = process, reader, error

    def __enter__(self) -> Beside:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self.wait()
        except BaseException:
            if exc_type is None:
                raise  # else the block's own error is the one to report
        return False

    def wait(self) -> None:
        if self._process is not None:
            try:
                self._error = self._reader.recv()
            except EOFError:  # it died without a word (killed, a crash in C)
                self._process.join()
                self._error = RuntimeError(f"child process {self._process.name!r} died "
                                           f"(exit status {self._process.exitcode})")
            self._process.join()
            self._reader.close()
            self._process = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def beside(fn, *args, **kwargs) -> Beside:
    """Run ``fn(*args, **kwargs)`` in a forked child process while the caller goes on, when this process owns
    more than one core (else at once, in turn); ``wait()`` returns when it is done and re-raises its error.

    Why a process: the report's PDF (matplotlib's text) and DICOM (pydicom) are Python-bound, so a thread would
    only take turns with the caller's HTML under the GIL.  The child inherits what the caller built (no
    copying); nothing comes back but the files it writes (atomically) and its error.
    """
    import multiprocessing

    if cores_owned() < 2 or "fork" not in multiprocessing.get_all_start_methods():  # no fork: Windows
        try:
            fn(*args, **kwargs)
        except BaseException as exc:  # kept for wait(), as the child's would be
            return Beside(error=exc)
        return Beside()
    ctx = multiprocessing.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)

    def run():
        try:
            fn(*args, **kwargs)
            writer.send(None)
        except BaseException as exc:
            writer.send(_portable(exc))

    process = ctx.Process(target=run, name=getattr(fn, "__name__", "beside"), daemon=True)
    process.start()
    writer.close()
    return Beside(process, reader)


def _portable(exc: BaseException) -> BaseException:
    """A bad-input error (PmlsegError, its one line) as it is; anything else as a RuntimeError carrying the child's
    traceback, so a crash there reads like one here."""
    import traceback

    from pmlseg.errors import PmlsegError

    if isinstance(exc, PmlsegError):
        return type(exc)(str(exc))  # SetupError stays a set-up problem
    return RuntimeError("in a child process: " + "".join(traceback.format_exception(exc)).rstrip())

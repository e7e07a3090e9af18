"""Work a process can do beside its main thread, when it owns the cores to do so.

Why: a lone patient's detection job owns both cores, yet its main thread leaves one mostly idle while it
imports MONAI, registers the follow-up's T1/T2/DWI or encodes DICOM, work that needs nothing detection finds;
SimpleITK and torch release the GIL, so a second thread overlaps it (docs/benchmarks.md "Session 13").  A job
given one thread (a cohort's detection jobs share the machine) runs the same tasks in turn: a thread there
would only contend with the other jobs.  Both ways the caller gets Futures, whose ``result()`` re-raises.
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

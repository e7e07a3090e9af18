"""pmlseg.background: a second thread only for a process that owns more than one core, errors kept for result()."""

import threading

import pytest

from pmlseg.background import InTurn, cores_owned, worker


def _where():
    return threading.current_thread().name


def test_one_thread_jobs_run_tasks_in_turn_and_keep_their_errors(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cores_owned() == 1
    pool = worker("t")
    assert isinstance(pool, InTurn) and pool.submit(_where).result() == threading.current_thread().name
    failed = pool.submit(int, "not a number")  # raised inside: kept, not thrown at submit
    with pytest.raises(ValueError):
        failed.result()


def test_jobs_owning_two_cores_run_tasks_in_one_background_thread_in_order(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    pool = worker("bg")
    order = []
    names = [pool.submit(lambda i=i: (order.append(i), _where())[1]) for i in range(3)]
    pool.shutdown(wait=True)
    assert order == [0, 1, 2] and {f.result() for f in names} == {names[0].result()}
    assert names[0].result().startswith("bg") and names[0].result() != threading.current_thread().name


def _write(path, text):
    path.write_text(text)


def _fail(exc):
    raise exc


def test_beside_runs_in_a_child_process_and_brings_its_errors_back(monkeypatch, tmp_path):
    import os

    from pmlseg.background import beside
    from pmlseg.errors import PmlsegError, SetupError

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    done = beside(lambda: _write(tmp_path / "pid", str(os.getpid())))
    done.wait()
    assert int((tmp_path / "pid").read_text()) != os.getpid()  # another process wrote it, and it is written
    for exc in (PmlsegError("x.dcm: truncated"), SetupError("no model")):
        with pytest.raises(type(exc), match=str(exc)):
            beside(_fail, exc).wait()
    with pytest.raises(RuntimeError, match=r"(?s)in a child process:.*KeyError: 'boom'"):  # a crash keeps its traceback
        beside(_fail, KeyError("boom")).wait()
    with pytest.raises(RuntimeError, match="_exit.* died .*exit status 3"):
        beside(os._exit, 3).wait()


def test_beside_runs_in_turn_for_a_one_core_job(monkeypatch, tmp_path):
    import os

    from pmlseg.background import beside

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    done = beside(lambda: _write(tmp_path / "pid", str(os.getpid())))
    assert int((tmp_path / "pid").read_text()) == os.getpid()  # already written, here
    done.wait()
    failed = beside(int, "not a number")  # kept for wait(), not thrown at the call
    with pytest.raises(ValueError):
        failed.wait()


def test_beside_as_a_block_waits_and_the_blocks_own_error_wins(monkeypatch, tmp_path):
    import time

    from pmlseg.background import beside

    monkeypatch.setenv("OMP_NUM_THREADS", "2")

    def slow_write():
        time.sleep(0.3)
        _write(tmp_path / "late", "done")

    with beside(slow_write):
        pass
    assert (tmp_path / "late").read_text() == "done"  # written when the block ended
    (tmp_path / "late").unlink()
    with pytest.raises(ZeroDivisionError):
        with beside(slow_write), beside(_fail, KeyError("child")):
            1 / 0
    assert (tmp_path / "late").read_text() == "done"  # still waited for: nothing written after the caller fails

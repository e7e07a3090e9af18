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

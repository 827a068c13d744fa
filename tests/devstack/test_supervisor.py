"""The dev stack's supervision (`devstack.supervisor`, the code `make run` uses) on small stand-in
processes: a killed worker comes back with back-off while the rest stays up, a crash-looping one is
reported loudly, and a dead child the stack cannot restart stops it. The clock is injected so the
back-off is checked step by step without waiting for it."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator

import pytest

from devstack.processes import Child
from devstack.supervisor import RestartPolicy, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
CRASHER = [sys.executable, "-c", "import sys; sys.exit(3)"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.stop(grace=2)


def _start(children: list[Child], name: str, argv: list[str]) -> Child:
    child = Child(name, argv)
    child.start()
    children.append(child)
    return child


def _wait_dead(child: Child) -> None:
    assert child.process is not None
    child.process.wait(timeout=30)


def test_a_killed_worker_is_started_again_after_its_back_off_and_the_rest_stays_up(
    children: list[Child],
) -> None:
    clock, reports = FakeClock(), list[str]()
    sup = Supervisor(RestartPolicy(initial_delay_s=1, max_delay_s=8), report=reports.append, clock=clock)
    temporal = _start(children, "temporal", SLEEPER)
    worker = _start(children, "worker", SLEEPER)
    sup.watch(temporal, restart=False)
    sup.watch(worker, restart=True)
    assert worker.process is not None
    first_pid = worker.process.pid

    os.kill(first_pid, signal.SIGKILL)
    _wait_dead(worker)
    assert sup.poll() is None  # noticed: due again in 1 s
    assert not worker.alive()
    clock.now += 0.5
    assert sup.poll() is None
    assert not worker.alive()  # still backing off
    clock.now += 0.5
    assert sup.poll() is None
    assert worker.alive() and worker.process is not None and worker.process.pid != first_pid
    assert temporal.alive()
    assert sup.restarts("worker") == 1
    assert reports == []  # one death is not a crash loop

    # A second death soon after waits twice as long.
    os.kill(worker.process.pid, signal.SIGKILL)
    _wait_dead(worker)
    assert sup.poll() is None
    clock.now += 1.5
    sup.poll()
    assert not worker.alive()
    clock.now += 0.5
    sup.poll()
    assert worker.alive()
    assert sup.restarts("worker") == 2

    # After a stable uptime the back-off starts from the beginning again.
    clock.now += 120
    sup.poll()
    os.kill(worker.process.pid, signal.SIGKILL)
    _wait_dead(worker)
    sup.poll()
    clock.now += 1
    sup.poll()
    assert worker.alive()
    assert temporal.alive()


def test_a_crash_looping_worker_is_reported_and_keeps_being_restarted(children: list[Child]) -> None:
    clock, reports = FakeClock(), list[str]()
    policy = RestartPolicy(initial_delay_s=1, max_delay_s=4, crash_loop_restarts=3, crash_loop_window_s=60)
    sup = Supervisor(policy, report=reports.append, clock=clock)
    api = _start(children, "api", SLEEPER)
    worker = _start(children, "worker", CRASHER)
    sup.watch(api, restart=True)
    sup.watch(worker, restart=True)
    delays: list[float] = []
    for _ in range(5):
        _wait_dead(worker)
        assert sup.poll() is None  # death noticed, restart scheduled
        waited = 0.0
        while sup.restarts("worker") < len(delays) + 1:
            clock.now += 0.5
            waited += 0.5
            assert sup.poll() is None
        delays.append(waited)
    assert delays == [1, 2, 4, 4, 4]  # doubling, capped
    assert len(reports) == 3  # from the third restart in the window on, every restart is reported
    assert "worker is crash-looping" in reports[0] and "started again 3 times" in reports[0]
    assert sup.in_crash_loop("worker")
    assert api.alive()


def test_a_dead_child_that_cannot_be_restarted_stops_the_stack(children: list[Child]) -> None:
    sup = Supervisor(RestartPolicy(initial_delay_s=0.01))
    sandbox = _start(children, "sandbox", CRASHER)
    worker = _start(children, "worker", SLEEPER)
    sup.watch(sandbox, restart=False)
    sup.watch(worker, restart=True)
    _wait_dead(sandbox)
    assert sup.poll() == "sandbox"


def test_the_stack_restarts_workers_with_real_time_back_off(children: list[Child]) -> None:
    """The same code on the real clock, as `make run` uses it: SIGKILL of the worker, and it is back."""
    sup = Supervisor(RestartPolicy(initial_delay_s=0.05))
    temporal = _start(children, "temporal", SLEEPER)
    worker = _start(children, "worker", SLEEPER)
    sup.watch(temporal, restart=False)
    sup.watch(worker, restart=True)
    assert worker.process is not None
    os.kill(worker.process.pid, signal.SIGKILL)
    _wait_dead(worker)
    deadline = time.monotonic() + 30
    while sup.restarts("worker") == 0 and time.monotonic() < deadline:
        assert sup.poll() is None
        time.sleep(0.02)
    assert worker.alive() and temporal.alive()

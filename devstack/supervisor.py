"""Keeps the dev stack's children running: a dead worker (or API) is started again with back-off while
everything else stays up; a dead Temporal, PostgreSQL or sandbox stops the stack, because they hold
state that a restart would lose (the sandboxes keep venue balances in memory).

Why restart at all: a worker holds no state of its own (Temporal hands its tasks to the next worker), so
the right answer to a crashed worker is another worker, not a dead broker. Why back-off: a worker that
dies at start (bad config, database gone) would otherwise spin the CPU. Why loud: a crash-looping worker
means no order or withdrawal progresses, which nobody must miss in a terminal full of logs.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from devstack.processes import Child


@dataclass(frozen=True)
class RestartPolicy:
    """How a restartable child is brought back. Delays double from `initial_delay_s` up to
    `max_delay_s`; an uptime of `stable_after_s` resets them. `crash_loop_restarts` restarts within
    `crash_loop_window_s` is a crash loop: reported on every further restart, and restarts go on."""

    initial_delay_s: float = 1.0
    max_delay_s: float = 30.0
    stable_after_s: float = 60.0
    crash_loop_restarts: int = 3
    crash_loop_window_s: float = 120.0


def report_to_terminal(message: str) -> None:
    """The default reporter: a banner on stderr, where the person running `make run` looks."""
    bar = "!" * 78
    print(f"\n{bar}\n!! {message}\n{bar}\n", file=sys.stderr, flush=True)


@dataclass
class _Watched:
    child: Child
    restart: bool
    started_at: float = 0.0
    delay_s: float = 0.0
    due_at: float | None = None  # when a dead child is to be started again
    restarts: deque[float] = field(default_factory=deque)  # restart times within the crash-loop window
    total_restarts: int = 0


class Supervisor:
    """Watches children; `poll()` restarts dead restartable ones when their back-off has passed.

    `clock` is injectable so the back-off arithmetic is the same code in tests and in `make run`.
    """

    def __init__(
        self,
        policy: RestartPolicy | None = None,
        *,
        report: Callable[[str], None] = report_to_terminal,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.report = report
        self.clock = clock
        self._watched: list[_Watched] = []

    def watch(self, child: Child, *, restart: bool) -> None:
        """Supervise an already started child; `restart` says whether its death is survivable."""
        self._watched.append(
            _Watched(child, restart, started_at=self.clock(), delay_s=self.policy.initial_delay_s)
        )

    def restarts(self, name: str) -> int:
        """How many times the child called `name` was started again (all time)."""
        return sum(w.total_restarts for w in self._watched if w.child.name == name)

    def in_crash_loop(self, name: str) -> bool:
        return any(w.child.name == name and self._crash_looping(w, self.clock()) for w in self._watched)

    def poll(self) -> str | None:
        """One look at every child. Returns the name of a dead child the stack cannot live without."""
        now = self.clock()
        for w in self._watched:
            if w.child.alive():
                if now - w.started_at >= self.policy.stable_after_s:
                    w.delay_s = self.policy.initial_delay_s
                continue
            if not w.restart:
                return w.child.name
            if w.due_at is None:
                code = w.child.process.returncode if w.child.process is not None else None
                print(
                    f"{w.child.name} exited (code {code}); starting it again in {w.delay_s:g} s",
                    file=sys.stderr,
                    flush=True,
                )
                w.due_at = now + w.delay_s
                w.delay_s = min(w.delay_s * 2, self.policy.max_delay_s)
            elif now >= w.due_at:
                self._restart(w, now)
        return None

    def _restart(self, w: _Watched, now: float) -> None:
        w.child.start()
        w.started_at, w.due_at = now, None
        w.restarts.append(now)
        w.total_restarts += 1
        if self._crash_looping(w, now):
            recent = len(w.restarts)
            self.report(
                f"{w.child.name} is crash-looping: started again {recent} times in the last "
                f"{self.policy.crash_loop_window_s:g} s; nothing on its task queues progresses. "
                f"Its log: {w.child.log_path or 'the terminal'}"
            )

    def _crash_looping(self, w: _Watched, now: float) -> bool:
        while w.restarts and now - w.restarts[0] > self.policy.crash_loop_window_s:
            w.restarts.popleft()
        return len(w.restarts) >= self.policy.crash_loop_restarts

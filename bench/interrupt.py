"""Stopping cleanly, and the fault-injection points of the reliability tests.

SIGTERM (a scheduler's preemption, ``kill``) and SIGINT (Ctrl-C) set a flag. The engine checks it
after every optimizer step: it saves an epoch checkpoint at that exact step and raises
``Interrupted``; the runner records the run as ``interrupted`` and exits non-zero, and a rerun
resumes from that step. A second signal exits at once (Python's default handlers are back by
then); every file the harness writes is written atomically, so nothing is torn either way.

``BENCH_FAULT=point:n`` (read once per process) makes the process SIGKILL itself the n-th time it
reaches ``point`` (``point:n:term`` sends SIGTERM instead, a clean stop); it exists for
``tests/test_faults.py`` and does nothing when unset.
"""
from __future__ import annotations

import os
import signal
import threading

_stop = threading.Event()
_signum: list[int] = []


class Interrupted(Exception):
    """Training stopped at a safe point because a stop was requested; the run can be resumed."""

    def __init__(self, signum: int, where: str = ""):
        self.signum = signum
        name = signal.Signals(signum).name if signum else "stop request"
        super().__init__(f"interrupted by {name}{' ' + where if where else ''}; rerun the same command to resume")


def stop_requested() -> bool:
    return _stop.is_set()


def request_stop(signum: int = 0) -> None:
    _signum.append(signum)
    _stop.set()


def stop_signal() -> int:
    """The signal that requested the stop (0: requested otherwise)."""
    return _signum[0] if _signum else 0


def raise_if_stopped(where: str = "") -> None:
    if _stop.is_set():
        raise Interrupted(stop_signal(), where)


def reset() -> None:
    _stop.clear()
    _signum.clear()


class stop_on_signals:
    """Within this block, the first SIGTERM/SIGINT requests a stop at the next safe point and the
    default handler is restored, so a second one acts at once. Outside the main thread: a no-op."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __enter__(self):
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        request_stop(signum)
        for s, old in self._old.items():
            signal.signal(s, old)

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        return False


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + signal number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (signum or signal.SIGTERM)


# --------------------------------------------------------------------------- fault injection (tests)

_point, _n, _how = (os.environ.get("BENCH_FAULT", "") + "::").split(":")[:3]
_remaining = [int(_n) if _n.isdigit() else 1]


def fault_point(name: str) -> None:
    """SIGKILL (or SIGTERM) this process the n-th time ``name`` is reached, when BENCH_FAULT=name:n[:term]."""
    if _point and name == _point:
        _remaining[0] -= 1
        if _remaining[0] == 0:
            os.kill(os.getpid(), signal.SIGTERM if _how == "term" else signal.SIGKILL)

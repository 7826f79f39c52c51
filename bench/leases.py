"""Claims on grid cells and locks on cached artifacts: several runners, one results folder.

A lease is a small JSON file created with O_CREAT | O_EXCL (atomic on local filesystems and NFS
v3+), naming its holder (host, pid, SLURM job id, a random token) and what it is doing. The holder
refreshes it every ``heartbeat_s`` from a background thread. A lease whose file has not been
refreshed for ``stale_after_s``, or whose holder is a dead process on this same host, is stale:
another runner takes it over by renaming the stale file away (only one rename can succeed) and
creating its own. Guarantees and limits are in docs/reliability.md.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

from .callbacks import PROGRESS
from .interrupt import fault_point, raise_if_stopped
from .store import atomic_write_bytes, utc_now

HOST = socket.gethostname()


def job_id() -> Optional[str]:
    """The scheduler job this process runs in: a SLURM job (``123`` or, for an array task, ``123_4``,
    as squeue and sacct name it), a submitit local job (``local-<pid>``), or None."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if env.get("SLURM_JOB_ID"):
        return env["SLURM_JOB_ID"]
    if env.get("SUBMITIT_LOCAL_JOB_ID"):
        return f"local-{env['SUBMITIT_LOCAL_JOB_ID']}"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lease(path: Path) -> Optional[dict]:
    """The holder info of a lease file, with its age in seconds; None when there is no file.
    A file being created (empty or half-written by its holder) reads as ``{"age_s": ...}``."""
    try:
        st = os.stat(path)
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        info = {}
    info["age_s"] = max(0.0, time.time() - st.st_mtime)
    return info


def is_stale(info: dict, stale_after_s: float) -> bool:
    if info.get("host") == HOST and isinstance(info.get("pid"), int) and not _pid_alive(info["pid"]):
        return True                                  # its process is gone: no need to wait
    return info["age_s"] > stale_after_s


class Lease:
    def __init__(self, path: Path, what: str, heartbeat_s: float = 10.0, stale_after_s: float = 120.0):
        self.path = Path(path)
        self.what = what
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.token = uuid.uuid4().hex
        self.held = False
        self.took_over: Optional[dict] = None        # the stale holder this lease replaced, if any
        # The heartbeat thread's refresh and the owner's release must not interleave: a refresh that
        # read the file before a release unlinked it would write it back, a claim nobody holds.
        self._lock = threading.Lock()

    def _info(self) -> dict:
        return {"token": self.token, "host": HOST, "pid": os.getpid(), "job_id": job_id(),
                "what": self.what, "started_at": self._started, "heartbeat_at": utc_now(), "progress": dict(PROGRESS)}

    def try_acquire(self) -> bool:
        """Take the lease if it is free or stale; False if a live holder has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = read_lease(self.path)
                if info is None:
                    continue                         # released meanwhile: try again
                if not is_stale(info, self.stale_after_s):
                    return False
                aside = self.path.with_name(f"{self.path.name}.stale-{self.token}")
                try:
                    os.rename(self.path, aside)      # only one runner's rename succeeds
                except FileNotFoundError:
                    continue
                aside.unlink(missing_ok=True)
                self.took_over = info
                continue
            self._started = utc_now()
            with os.fdopen(fd, "w") as f:
                json.dump(self._info(), f)
            self.held = True
            _HEARTBEAT.add(self)
            fault_point("lease-acquired")
            return True
        return False

    def refresh(self) -> None:
        """Rewrite the file (new heartbeat and progress) if this lease still owns it."""
        with self._lock:
            if not self.held:
                return
            info = read_lease(self.path)
            if info is None or info.get("token") != self.token:
                self.held = False                        # taken over: we were thought dead
                _HEARTBEAT.discard(self)
                return
            atomic_write_bytes(self.path, json.dumps(self._info()).encode())

    def release(self) -> None:
        with self._lock:
            if not self.held:
                return
            _HEARTBEAT.discard(self)
            self.held = False
            info = read_lease(self.path)
            if info is not None and info.get("token") == self.token:
                self.path.unlink(missing_ok=True)

    def holder(self) -> str:
        info = read_lease(self.path) or {}
        job = f", job {info['job_id']}" if info.get("job_id") else ""
        return f"{info.get('host', '?')} pid {info.get('pid', '?')}{job}"


class _Heartbeat:
    """One daemon thread per process refreshes every held lease."""

    def __init__(self):
        self._leases: set[Lease] = set()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None

    def add(self, lease: Lease) -> None:
        with self._lock:
            self._leases.add(lease)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="bench-heartbeat", daemon=True)
                self._thread.start()

    def discard(self, lease: Lease) -> None:
        with self._lock:
            self._leases.discard(lease)

    def _run(self) -> None:
        while True:
            with self._lock:
                leases = list(self._leases)
            wait = min((l.heartbeat_s for l in leases), default=1.0)
            time.sleep(wait)
            for lease in leases:
                try:
                    lease.refresh()
                except OSError:
                    pass                             # a transient filesystem error: next beat retries


_HEARTBEAT = _Heartbeat()


def wait_for(lease: Lease, ready, log, poll_s: float = 0.5):
    """Acquire ``lease``, unless ``ready()`` returns something first (another runner made the
    artifact meanwhile): returns ``(True, None)`` when acquired, ``(False, value)`` otherwise.
    Raises ``Interrupted`` when a stop is requested while waiting."""
    told = False
    while not lease.try_acquire():
        value = ready()
        if value is not None:
            return False, value
        raise_if_stopped(f"while waiting for {lease.what}")    # a job told to stop waits no longer
        if not told:
            log(f"  waiting for {lease.what} (locked by {lease.holder()})")
            told = True
        time.sleep(poll_s)
    return True, None

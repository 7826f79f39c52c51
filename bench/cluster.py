"""Run one grid with several workers: processes on this machine or SLURM jobs, through submitit.

Every worker runs the same grid loop as an inline run (``runner.run_grid``): it walks the grid,
claims a free cell, runs it and moves on, so the cells spread over the workers by themselves and
a cell is never run by two workers at once. Shared artifacts (teachers, dense models, fine-tuned
students, the rounds of COLT/EGP) are not scheduled ahead: the first worker that needs one makes
it under its lock, and the others wait for it and reuse it (docs/cluster.md says what that costs).

``local``: one worker process per visible GPU, each seeing only its own device; or ``--workers N``
(on the CPU: N processes, each with an equal share of the CPU threads). ``slurm``: a job array of
``--workers N`` tasks (default: one per cell left to run), with the ``slurm`` config section's
resources. A job that gets SLURM's warning signal (its time limit is near, or it is preempted)
stops at the next training step, writes the epoch checkpoint, records its cell as interrupted and
requeues itself; the requeued job resumes the cell from that checkpoint.

submitit is imported only here, only for these executors: ``inline`` runs without it.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from . import registry
from .config import Config, ConfigError, config_copy, from_dict, to_dict
from .data import check_dataset
from .grid import expand_grid
from .interrupt import request_stop, reset as reset_stop
from .leases import HOST, job_id
from .runner import check_results_dir, run_grid
from .runtime import device_type
from .store import atomic_write_json, status_of

EXECUTORS = ("inline", "local", "slurm")
LOCAL_TIMEOUT_MIN = 60 * 24 * 365         # local workers have no time limit of their own


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("--executor local and slurm need the submitit package (pip install submitit); "
                          "--executor inline (the default) runs without it") from None
    return submitit


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Worker:
    """What submitit runs in each job: the grid loop over a shared results folder.

    The loop runs in a thread so that the main thread stays free for signals: SIGTERM and SIGINT
    request a stop at the next training step (the cell is recorded as interrupted, resumable), and
    submitit's preemption handler calls ``checkpoint``, which does the same, waits for the epoch
    checkpoint and the record, and hands submitit this worker again to requeue."""

    def __init__(self, cfg: Config, results_dir: Path, data_dir: Path, *, download: bool = False,
                 keep_checkpoints: bool = False, threads: Optional[int] = None, index: int = 0):
        self.cfg, self.results_dir, self.data_dir = cfg, Path(results_dir), Path(data_dir)
        self.download, self.keep_checkpoints, self.threads, self.index = download, keep_checkpoints, threads, index
        self._thread: Optional[threading.Thread] = None
        self._outcome: Optional[dict] = None
        self._error: Optional[BaseException] = None

    def __getstate__(self):
        # The config travels as plain data with the plug-in files that define its methods and sections:
        # a plug-in's classes cannot be imported by name in another process before the file is loaded.
        state = {k: v for k, v in self.__dict__.items() if k not in ("_thread", "_outcome", "_error", "cfg")}
        return {**state, "cfg": to_dict(self.cfg), "plugins": [q["path"] for q in registry.plugins()]}

    def __setstate__(self, state):
        state = dict(state)
        registry.load_plugins(state.pop("plugins"))
        self.__dict__.update(state, cfg=from_dict(Config, state["cfg"]), _thread=None, _outcome=None, _error=None)

    def __call__(self) -> dict:
        import torch

        threads = self.threads or int(os.environ.get("SLURM_CPUS_PER_TASK") or 0)
        if threads:
            torch.set_num_threads(threads)
        reset_stop()
        self._thread = threading.Thread(target=self._run, name="bench-grid", daemon=True)
        old = {s: signal.signal(s, lambda signum, frame: request_stop(signum)) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._thread.start()
            while self._thread.is_alive():
                self._thread.join(0.2)      # short waits: signal handlers run between them
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        if self._error is not None:
            raise self._error
        return {**self._outcome, "worker": self.index, "host": HOST, "job_id": job_id(), "threads": threads or None}

    def _run(self) -> None:
        try:
            self._outcome = run_grid(self.cfg, self.results_dir, self.data_dir, download=self.download,
                                     keep_checkpoints=self.keep_checkpoints,
                                     log=lambda line: print(line, flush=True))
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            self._error = e

    def checkpoint(self, *args, **kwargs):
        """submitit calls this on the preemption / time-limit signal (USR2): stop at the next step,
        let the run write its epoch checkpoint and interrupted record, then requeue a fresh worker."""
        import submitit

        request_stop(signal.SIGUSR2)
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.2)
        print("preempted or near the time limit: the cell in progress is checkpointed; requeueing", flush=True)
        fresh = Worker(self.cfg, self.results_dir, self.data_dir, download=self.download,
                       keep_checkpoints=self.keep_checkpoints, threads=self.threads, index=self.index)
        return submitit.helpers.DelayedSubmission(fresh)


# --------------------------------------------------------------------------- submitting

def _worker_config(cfg: Config, dev_type: str) -> Config:
    """The config a worker runs: on a GPU it sees only its own device, so ``cuda:N`` becomes
    ``cuda`` (the device index is not part of any run's identity)."""
    out = config_copy(cfg)
    if dev_type == "cuda" and out.runtime.device.startswith("cuda"):
        out.runtime.device = "cuda"
    return out


def _visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES would name them for a child."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    given = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return given[:n] if given else [str(i) for i in range(n)]


def _pythonpath_for_jobs() -> None:
    """Jobs import the same ``bench`` as this process, wherever they start (they inherit the environment)."""
    root = str(Path(__file__).resolve().parent.parent)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + parts)


def submit_local(submitit, cfg: Config, folder: Path, make_worker: Callable[..., Worker], dev_type: str,
                 workers: Optional[int], log) -> list:
    executor = submitit.LocalExecutor(folder=folder, max_num_timeout=cfg.slurm.max_requeues)
    if dev_type == "cuda":
        gpus = _visible_gpus()
        n = workers or len(gpus)
        log(f"local executor: {n} worker(s) over {len(gpus)} GPU(s) ({', '.join(gpus)}), each sees one")
    else:
        if not workers:
            raise ConfigError("--executor local on the CPU needs --workers N (how many worker processes)")
        gpus, n = [], workers
        log(f"local executor: {n} CPU worker(s), {max(1, _cpu_count() // n)} thread(s) each")
    threads = max(1, _cpu_count() // n)
    jobs = []
    for k in range(n):
        # One GPU per worker by CUDA_VISIBLE_DEVICES (set in the job's shell, so any naming works:
        # indices or UUIDs); CPU workers see none.
        setup = [f"export CUDA_VISIBLE_DEVICES={gpus[k % len(gpus)]}"] if gpus else []
        executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, gpus_per_node=0, setup=setup)
        jobs.append(executor.submit(make_worker(threads=threads, index=k)))
    return jobs


def submit_slurm(submitit, cfg: Config, folder: Path, make_worker: Callable[..., Worker], workers: int, log) -> list:
    s = cfg.slurm
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=s.max_requeues)
    params = dict(name=f"bench-{cfg.name}", timeout_min=s.time_min, nodes=1, tasks_per_node=1,
                  cpus_per_task=s.cpus_per_job, gpus_per_node=s.gpus_per_job, slurm_signal_delay_s=s.signal_delay_s,
                  slurm_additional_parameters=dict(s.sbatch), slurm_setup=list(s.setup),
                  slurm_array_parallelism=s.array_parallelism or workers)
    if s.partition:
        params["slurm_partition"] = s.partition
    if s.mem_gb:
        params["mem_gb"] = s.mem_gb
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(make_worker(threads=None, index=k)) for k in range(workers)]   # threads: the job's CPUs
    log(f"slurm: submitted {workers} worker(s) as job array {jobs[0].job_id.split('_')[0]} "
        f"({s.gpus_per_job} GPU(s), {s.cpus_per_job} CPU(s), {s.time_min} min each"
        + (f", partition {s.partition}" if s.partition else "") + ")")
    return jobs


def _record_submission(results_dir: Path, executor: str, cfg: Config, jobs: list, folder: Path) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc)
    path = results_dir / "jobs" / f"{stamp.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json"
    ids = [str(j.job_id) for j in jobs]
    if executor == "local":
        ids = [f"local-{i}" for i in ids]
    atomic_write_json(path, {"submitted_at": stamp.isoformat(timespec="seconds"), "executor": executor,
                             "config": cfg.name, "jobs": ids, "logs": str(folder)})
    return path


def run_with_workers(cfg: Config, results_dir: Path, data_dir: Path, *, executor: str, workers: Optional[int] = None,
                     download: bool = False, keep_checkpoints: bool = False, wait: bool = True,
                     log: Callable[[str], None] = print, poll_s: float = 2.0) -> int:
    """Submit the workers of ``cfg``'s grid and (unless ``wait`` is false) wait for them; returns the
    exit code: 0 when every cell is done and no worker crashed, 1 otherwise."""
    if executor not in ("local", "slurm", "debug"):
        raise ConfigError(f"--executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}; allowed: an integer >= 1")
    submitit = _import_submitit()
    results_dir = Path(results_dir)
    # Where the cells will run decides their ids: SLURM jobs with GPUs run on CUDA even when this
    # (login) machine has none.
    dev_type = ("cuda" if cfg.slurm.gpus_per_job else "cpu") if executor == "slurm" and cfg.runtime.device == "auto" \
        else device_type(cfg.runtime)
    specs = expand_grid(cfg, dev_type)
    check_results_dir(results_dir)
    for dcfg in {json.dumps(to_dict(s.config.dataset), sort_keys=True): s.config.dataset for s in specs}.values():
        check_dataset(dcfg, data_dir, download)          # a missing dataset stops here, before any job
    left = [s for s in specs if status_of(results_dir, s)[0] != "done"]
    log(f"grid {cfg.name!r}: {len(specs)} runs, {len(specs) - len(left)} already done, {len(left)} to run")
    if not left:
        return 0
    folder = results_dir / "submitit"
    wcfg = _worker_config(cfg, dev_type)

    def make_worker(threads, index):
        return Worker(wcfg, results_dir.resolve(), Path(data_dir).resolve(), download=download,
                      keep_checkpoints=keep_checkpoints, threads=threads, index=index)

    _pythonpath_for_jobs()
    if executor == "local":
        jobs = submit_local(submitit, cfg, folder, make_worker, dev_type, workers, log)
    elif executor == "slurm":
        if shutil.which("sbatch") is None:
            raise ConfigError("--executor slurm: sbatch is not on PATH (run this on a SLURM login node)")
        jobs = submit_slurm(submitit, cfg, folder, make_worker, workers or len(left), log)
    else:                      # submitit's debug executor: the workers one after another, in this process
        ex = submitit.DebugExecutor(folder=folder)
        jobs = [ex.submit(make_worker(threads=None, index=k)) for k in range(workers or 1)]
    _record_submission(results_dir, executor, cfg, jobs, folder)
    log(f"worker logs: {folder}; cell logs: {results_dir / 'logs'}; progress: python -m bench status "
        f"<config> --results {results_dir}")
    if not wait:
        log("not waiting (--no-wait): the jobs go on; rerun the same command later to run whatever they left")
        return 0
    crashed = _wait(submitit, jobs, log, poll_s)
    states = [status_of(results_dir, s)[0] for s in specs]
    counts = {k: states.count(k) for k in ("done", "failed", "interrupted", "pending")}
    log(f"grid {cfg.name!r}: {counts['done']} done, {counts['failed']} failed, {counts['interrupted']} interrupted, "
        f"{counts['pending']} pending" + (f"; {crashed} worker(s) crashed" if crashed else ""))
    if counts["done"] < len(specs):
        log("rerun the same command to retry failed cells and resume the others (see docs/cluster.md)")
    return 0 if counts["done"] == len(specs) and not crashed else 1


def _wait(submitit, jobs: list, log, poll_s: float) -> int:
    """Wait for every job, printing each worker's outcome as it ends; returns how many crashed."""
    crashed = 0
    pending = list(enumerate(jobs))
    while pending:
        for k, job in list(pending):
            if not job.done():
                continue
            pending.remove((k, job))
            name = f"worker {k} (job {job.job_id})"
            try:
                out = job.result()
            except submitit.core.utils.FailedJobError as e:
                crashed += 1
                log(f"{name} CRASHED: {_error_line(str(e))}\n  its log: {job.paths.stderr}")
                continue
            except submitit.core.utils.UncompletedJobError as e:
                crashed += 1
                log(f"{name} ended without a result (cancelled, killed or out of time): {_error_line(str(e))}\n"
                    f"  its log: {job.paths.stdout}")
                continue
            stop = f", stopped by signal {out['interrupted']}" if out.get("interrupted") else ""
            log(f"{name} on {out.get('host')}: {out.get('ok', 0)} ok, {out.get('failed', 0)} failed, "
                f"{out.get('skipped', 0)} skipped, {out.get('elsewhere', 0)} left to other workers{stop}")
        if pending:
            time.sleep(poll_s)
    return crashed


def _error_line(text: str) -> str:
    """The exception line of a failed job's traceback (submitit puts the traceback between dashed
    lines; an exception's message may run over several lines: its first one), else the first line."""
    parts = re.split(r"^-{10,}$", text, flags=re.M)
    lines = [l.strip() for l in (parts[1] if len(parts) >= 3 else text).strip().splitlines() if l.strip()]
    exc = [l for l in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Interrupted|Exit)(:|$)", l)]
    line = exc[-1] if exc else (lines[0] if lines else text)
    return line if len(line) <= 300 else line[:297] + "..."


# --------------------------------------------------------------------------- job states (bench status)

def latest_submission(results_dir: Path) -> Optional[dict]:
    files = sorted((Path(results_dir) / "jobs").glob("*.json"))
    if not files:
        return None
    try:
        return json.loads(files[-1].read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _run(cmd: list[str], empty_if: str = "") -> Optional[str]:
    """The command's stdout; None if it is missing, times out or fails, except a failure whose
    stderr contains ``empty_if``, which reads as an empty answer."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode == 0:
        return out.stdout
    return "" if empty_if and empty_if in out.stderr else None


def _queued(ids: list[str]) -> Optional[dict[str, str]]:
    """{job id: state} of the jobs among ``ids`` that squeue (the controller's live view) lists:
    pending, running, completing, requeued... An array of one task shows as its base id. None
    where squeue is missing or no controller answers."""
    bases = sorted({i.split("_")[0] for i in ids})
    # Asked about a single job id it no longer knows, squeue fails with this message.
    text = _run(["squeue", "-h", "-r", "-j", ",".join(bases), "-o", "%i|%T"], empty_if="Invalid job id")
    if text is None:
        return None
    listed = dict(line.strip().split("|", 1) for line in text.splitlines() if "|" in line)
    return {i: listed.get(i) or listed[i.split("_")[0]] for i in ids if i in listed or i.split("_")[0] in listed}


def job_states(ids: list[str]) -> dict[str, str]:
    """{job id: state}: SLURM jobs from squeue while queued or running (sacct lags behind the
    controller: a running job can still read PENDING there), from sacct (accounting) once ended;
    submitit local jobs (``local-<pid>``) from whether their process lives. Unknown: 'unknown'."""
    states: dict[str, str] = {}
    local = [i for i in ids if i.startswith("local-")]
    for i in local:
        pid = int(i.split("-", 1)[1])
        try:
            os.kill(pid, 0)
            states[i] = "RUNNING"
        except ProcessLookupError:
            states[i] = "ENDED"
        except PermissionError:
            states[i] = "RUNNING"
    slurm = [i for i in ids if re.fullmatch(r"\d+(_\d+)?", i)]
    queued = _queued(slurm) if slurm else {}
    states.update(queued or {})
    ended = [i for i in slurm if i not in states]
    if ended:
        bases = sorted({i.split("_")[0] for i in ended})
        text = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(bases), "-o", "JobID,State"])
        found = dict(line.split("|", 1) for line in (text or "").splitlines() if "|" in line)
        # without accounting, a job squeue no longer lists has ended
        default = "not in queue (ended)" if text is None and queued is not None else "unknown"
        for i in ended:
            states[i] = found[i].split()[0] if found.get(i) else default
    return {i: states.get(i, "unknown") for i in ids}

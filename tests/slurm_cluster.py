"""A real single-node SLURM cluster for tests: Debian's slurm-wlm (controller + node daemon) with
slurmdbd accounting on a private MariaDB, all in one temporary folder, started without systemd
and stopped by their own pids. ``start()`` raises ``Unavailable`` (a reason to skip) when the
packages cannot be installed or the daemons cannot start.

Accounting matters: without it ``sacct`` fails, submitit cannot see that a cancelled job ended,
and waiting for it never returns.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurm-wlm", "slurmdbd", "mariadb-server", "munge"]
DAEMONS = ["slurmctld", "slurmd", "slurmdbd", "mariadbd", "sbatch", "sacct", "scontrol", "sinfo", "mariadb-install-db"]
PORTS = {"slurmctld": 6817, "slurmd": 6818, "slurmdbd": 6819, "mariadb": 3307}


class Unavailable(RuntimeError):
    """SLURM cannot be had on this machine; the message says why."""


def _missing() -> list[str]:
    return [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]


def install() -> None:
    """apt-get install the packages when a daemon is missing (root only)."""
    if not _missing():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(f"SLURM is not installed ({', '.join(_missing())} missing) and this is not a root "
                          f"Debian/Ubuntu machine to apt-get install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise Unavailable(f"{' '.join(cmd)} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    if _missing():
        raise Unavailable(f"after installing {' '.join(PACKAGES)}, still missing: {', '.join(_missing())}")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _wait(what: str, ok, timeout: float, log: Path | None = None) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if ok():
            return
        time.sleep(0.25)
    tail = log.read_text()[-1500:] if log is not None and log.exists() else ""
    raise Unavailable(f"{what} did not come up within {timeout:g} s{': ' + tail if tail else ''}")


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class Cluster:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.host = socket.gethostname().split(".")[0]
        self.pids: dict[str, int] = {}
        self._children: dict[int, subprocess.Popen] = {}      # daemons that stay our children (MariaDB)

    @property
    def env(self) -> dict:
        return {"SLURM_CONF": str(self.conf)}

    def _pidfile(self, name: str) -> Path:
        return self.root / "run" / f"{name}.pid"

    def start(self) -> "Cluster":
        if os.geteuid() != 0:
            raise Unavailable("the test cluster runs its daemons as root; this is not root")
        busy = [f"{n} ({p})" for n, p in PORTS.items() if not _port_free(p)]
        if busy:
            raise Unavailable(f"ports in use: {', '.join(busy)} (another SLURM or MariaDB is running)")
        for d in ("state", "spool", "log", "run", "mysql"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        try:
            self._start_mariadb()
            self._start_slurmdbd()
            self._start_slurm()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_mariadb(self) -> None:
        r = subprocess.run([_sbin("mariadb-install-db"), "--user=root", f"--datadir={self.root / 'mysql'}",
                            "--auth-root-authentication-method=socket", "--skip-test-db"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise Unavailable(f"mariadb-install-db failed: {r.stderr.strip()[-500:]}")
        sock = self.root / "run" / "mysqld.sock"
        log = self.root / "log" / "mariadb.log"
        proc = subprocess.Popen([_sbin("mariadbd"), "--no-defaults", "--user=root", f"--datadir={self.root / 'mysql'}",
                                 "--port=3307", "--bind-address=127.0.0.1", f"--socket={sock}",
                                 f"--pid-file={self._pidfile('mysqld')}", f"--log-error={log}", "--skip-log-bin"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.pids["mariadbd"] = proc.pid
        self._children[proc.pid] = proc

        def ready():
            return subprocess.run(["mariadb-admin", f"--socket={sock}", "ping"], capture_output=True).returncode == 0

        _wait("MariaDB", ready, 60, log)
        sql = ("CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'bench'; CREATE USER 'slurm'@'localhost' IDENTIFIED BY "
               "'bench'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; GRANT ALL ON slurm_acct_db.* TO "
               "'slurm'@'localhost'; FLUSH PRIVILEGES;")
        r = subprocess.run(["mariadb", f"--socket={sock}", "-u", "root", "-e", sql], capture_output=True, text=True)
        if r.returncode != 0:
            raise Unavailable(f"creating the accounting database user failed: {r.stderr.strip()}")

    def _start_slurmdbd(self) -> None:
        conf = self.root / "slurmdbd.conf"
        conf.write_text("\n".join([
            "AuthType=auth/none", "DbdHost=localhost", "DbdAddr=127.0.0.1", f"DbdPort={PORTS['slurmdbd']}",
            "SlurmUser=root", "StorageType=accounting_storage/mysql", "StorageHost=127.0.0.1",
            f"StoragePort={PORTS['mariadb']}", "StorageUser=slurm", "StoragePass=bench", "StorageLoc=slurm_acct_db",
            f"PidFile={self._pidfile('slurmdbd')}", f"LogFile={self.root / 'log' / 'slurmdbd.log'}", ""]))
        conf.chmod(0o600)
        env = {**os.environ, **self.env}
        r = subprocess.run([_sbin("slurmdbd")], env=env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise Unavailable(f"slurmdbd failed to start: {(r.stderr or r.stdout).strip()[-500:]}")
        _wait("slurmdbd", lambda: not _port_free(PORTS["slurmdbd"]), 30, self.root / "log" / "slurmdbd.log")
        self.pids["slurmdbd"] = int(self._pidfile("slurmdbd").read_text())

    def _start_slurm(self) -> None:
        cpus = os.cpu_count() or 1
        mem_mb = int(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 * 0.8)
        d = self.root
        self.conf.write_text("\n".join([
            "ClusterName=benchtest", f"SlurmctldHost={self.host}(127.0.0.1)", "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/none", "CredType=cred/none", "MpiDefault=none", "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/slurmdbd", "AccountingStorageHost=127.0.0.1",
            f"AccountingStoragePort={PORTS['slurmdbd']}", "JobCompType=jobcomp/none", "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "ReturnToService=2",
            f"SlurmctldPort={PORTS['slurmctld']}", f"SlurmdPort={PORTS['slurmd']}",
            f"StateSaveLocation={d / 'state'}", f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={self._pidfile('slurmctld')}", f"SlurmdPidFile={self._pidfile('slurmd')}",
            f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={d / 'log' / 'slurmd.log'}",
            "MailProg=/bin/true", "InactiveLimit=0", "MinJobAge=300", "KillWait=10", "Waittime=0",
            "SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP", ""]))
        env = {**os.environ, **self.env}
        for daemon in ("slurmctld", "slurmd"):
            r = subprocess.run([_sbin(daemon), "-f", str(self.conf)], env=env, capture_output=True, text=True,
                               timeout=60)
            if r.returncode != 0:
                raise Unavailable(f"{daemon} failed to start: {(r.stderr or r.stdout).strip()[-500:]}")
            _wait(f"{daemon}'s pid file", self._pidfile(daemon).exists, 30, d / "log" / f"{daemon}.log")
            self.pids[daemon] = int(self._pidfile(daemon).read_text())

        def idle():
            r = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            return r.stdout.strip() == "idle"

        _wait("the SLURM node (sinfo: idle)", idle, 60, d / "log" / "slurmctld.log")

    def stop(self) -> None:
        """Stop every daemon this cluster started, by its pid, newest first."""
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                child = self._children.get(pid)
                if child is not None and child.poll() is not None:
                    break
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

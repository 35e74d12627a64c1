"""A real single-node Slurm for the tests, from Debian's packages.

munged, slurmctld and slurmd run in the foreground under a temporary
directory, with their own munge key and socket, ports picked free on
loopback and ``SLURM_CONF`` pointing the client commands at them; nothing is
installed and nothing outside that directory is touched. ``.ci/run``
installs the packages (``slurmctld slurmd slurm-client munge``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "scontrol", "scancel", "squeue", "sinfo")
#: CPUs the node offers jobs (array tasks run side by side on them).
CPUS = 4
#: Seconds Slurm waits between SIGTERM and SIGKILL; sites often use 30.
KILL_WAIT = 5
ENDED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
}


def missing() -> str | None:
    """Why a Slurm cannot be started here, or None."""
    absent = [name for name in (*DAEMONS, *CLIENTS) if not _which(name)]
    if absent:
        return (
            f"Slurm is not installed here ({', '.join(absent)} missing); "
            "apt-get install slurmctld slurmd slurm-client munge"
        )
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _which(name: str) -> str | None:
    """The daemons live in /usr/sbin, which a user's PATH may lack."""
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin")


@dataclass
class Slurm:
    root: Path
    conf: Path
    daemons: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def call(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            command,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run(self, *command: str) -> str:
        result = self.call(*command)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        return result.stdout

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job``'s fields (kept for MinJobAge after the end)."""
        line = self.run("scontrol", "show", "job", "-o", job_id)
        return dict(re.findall(r"(\w+)=(\S*)", line))

    def wait(self, job_id: str, timeout: float = 120, states=ENDED) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["JobState"] in states:
                return job
            assert time.monotonic() < deadline, f"job {job_id} is still {job}"
            time.sleep(0.1)

    def cancel_all(self) -> None:
        jobs = self.run("squeue", "-h", "-o", "%i").split()
        if jobs:
            self.run("scancel", *jobs)


def _wait_for(check, what: str, logs: list[Path], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tails = "\n".join(
                f"--- {log}\n{log.read_text()[-2000:]}" for log in logs if log.exists()
            )
            raise RuntimeError(f"{what} did not come up:\n{tails}")
        time.sleep(0.1)


def start(root: Path) -> Slurm:
    """munged, then slurmctld, then slurmd; returns once the node is idle."""
    munge = root / "munge"
    munge.mkdir(mode=0o700, parents=True)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    munge_socket = munge / "munge.socket"
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(mode=0o755)
    conf = root / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=condamigrate",
                "SlurmctldHost=localhost",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                "SlurmUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={munge_socket}",
                f"StateSaveLocation={root / 'state'}",
                f"SlurmdSpoolDir={root / 'spool'}",
                f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                f"SlurmdPidFile={root / 'slurmd.pid'}",
                f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
                f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
                "ProctrackType=proctrack/pgid",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "JobCompType=jobcomp/none",
                "MpiDefault=none",
                "SchedulerType=sched/builtin",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_CPU",
                "ReturnToService=2",
                f"KillWait={KILL_WAIT}",
                "MinJobAge=3600",
                "InactiveLimit=0",
                # Job arrays run tasks side by side, whatever the machine's
                # cores: the node claims 4 CPUs, which slurmd accepts with
                # config_overrides.
                "SlurmdParameters=config_overrides",
                f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={CPUS} State=UNKNOWN",
                "PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    logs = [munge / "munged.log", root / "log" / "slurmctld.log"]
    logs.append(root / "log" / "slurmd.log")
    slurm = Slurm(root, conf)
    env = {**os.environ, **slurm.env}
    commands = [
        [
            _which("munged"),
            "--foreground",
            "--force",
            f"--socket={munge_socket}",
            f"--key-file={key}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={munge / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        ],
        [_which("slurmctld"), "-D", "-i", "-f", str(conf)],
        [_which("slurmd"), "-D", "-N", "localhost", "-f", str(conf)],
    ]
    ready = [
        munge_socket.exists,
        lambda: _quietly(slurm, "scontrol", "ping"),
        lambda: "idle" in _quietly(slurm, "sinfo", "-h", "-o", "%T"),
    ]
    try:
        for command, check in zip(commands, ready):
            with open(root / "log" / f"{Path(command[0]).name}.out", "w") as out:
                slurm.daemons.append(
                    subprocess.Popen(
                        command,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            _wait_for(check, command[0], logs)
    except BaseException:
        stop(slurm)
        raise
    return slurm


def _quietly(slurm: Slurm, *command: str) -> str:
    result = slurm.call(*command, timeout=30)
    return result.stdout if result.returncode == 0 else ""


def stop(slurm: Slurm) -> None:
    """Cancel what is left, then stop the daemons by pid, newest first."""
    if len(slurm.daemons) == len(DAEMONS):
        try:
            slurm.cancel_all()
            deadline = time.monotonic() + KILL_WAIT + 10
            while _quietly(slurm, "squeue", "-h") and time.monotonic() < deadline:
                time.sleep(0.2)
        except (AssertionError, subprocess.SubprocessError):
            pass
    for daemon in reversed(slurm.daemons):
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()

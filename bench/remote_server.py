"""BuildGrid for the remote benchmarks, from the venv scripts/setup makes. For the remote cache:
`bgd server start` on a free loopback port with an in-memory CAS and action cache (the
configuration tests/remote_cache/buildgrid.rs uses, with more room). For remote execution
(ExecGrid): the same plus BuildGrid's SQL scheduler on a throw-away PostgreSQL and local
`kiln worker` processes, as tests/remote_exec.rs sets them up."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from registry import STARTED, free_port

VENV = os.environ.get("KILN_BUILDGRID_VENV", "/var/cache/kiln-buildgrid/venv")

CONFIG = """server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
storages:
  - !lru-storage &cas
    size: 2GB
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 65536
    allow-updates: true
    cache-failed-actions: false
instances:
  - name: ""
    services:
      - !action-cache
        cache: *ac
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
"""


class BuildGrid:
    def __init__(self, base):
        bgd = os.path.join(VENV, "bin/bgd")
        if not os.path.exists(bgd):
            raise SystemExit(f"bench: BuildGrid is not installed at {bgd} (scripts/setup installs it)")
        self.dir = os.path.join(base, f"buildgrid-{time.time_ns()}")
        os.makedirs(self.dir)
        self.port = free_port()
        cfg = os.path.join(self.dir, "buildgrid.yml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(port=self.port))
        self.log = os.path.join(self.dir, "bgd.log")
        self.proc = subprocess.Popen([bgd, "server", "start", cfg], cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        STARTED.append(self.proc)
        self.url = f"grpc://127.0.0.1:{self.port}"
        # Bounded: Python's start-up on a busy machine takes seconds, never minutes.
        for _ in range(720):
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: bgd exited before serving; see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise SystemExit(f"bench: bgd never listened on {self.port}; see {self.log}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


# ---------------------------------------------------------------------------------------------
# Remote execution: PostgreSQL for BuildGrid's SQL scheduler, BuildGrid with the execution and
# bots services, and `kiln worker` processes on this machine (the set-up of tests/remote_exec.rs).

# The configuration tests/remote_exec.rs starts, with more room in the CAS and action cache.
EXEC_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "tests", "buildgrid", "exec.yml")


def exec_config(port, sql):
    with open(EXEC_CONFIG) as f:
        text = f.read()
    for key, value in (("port", port), ("sql", sql), ("cas_size", "2GB"), ("max_refs", 65536)):
        text = text.replace("{" + key + "}", str(value))
    return text


def pg_bin(name):
    for d in ("/usr/local/bin", "/usr/lib/postgresql/15/bin"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    raise SystemExit(f"bench: PostgreSQL's {name} is not installed (scripts/setup installs it)")


def as_pg_user(argv):
    """PostgreSQL refuses to run as root: its tools run as the `postgres` user then."""
    return (["runuser", "-u", "postgres", "--"] + argv) if os.geteuid() == 0 else argv


class Postgres:
    """A throw-away cluster (initdb) on a free loopback port, fsync off, trust authentication.
    Its directory is a temp dir of its own, not under the bench's (which is private to root),
    so that the `postgres` user can reach it; stop() removes it."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kiln-bench-pg.")
        self.data = os.path.join(self.dir, "data")
        self.started = False
        try:
            if os.geteuid() == 0:
                shutil.chown(self.dir, user="postgres")
            run(as_pg_user([pg_bin("initdb"), "-D", self.data, "-U", "kiln", "--auth=trust",
                            "-E", "UTF8"]), "initdb", timeout=180)
            self.port = free_port()
            opts = f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off"
            self.started = True  # from here on a stop is due even if the start fails half-way
            run(as_pg_user([pg_bin("pg_ctl"), "-D", self.data, "-o", opts, "-w", "-t", "120",
                            "-l", os.path.join(self.dir, "log"), "start"]), "pg_ctl start",
                timeout=180)
        except BaseException:
            self.stop()
            raise
        self.url = f"postgresql://kiln@127.0.0.1:{self.port}/postgres"

    def query(self, sql):
        r = run(as_pg_user([pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "kiln",
                            "-d", "postgres", "-tAc", sql]), "psql", timeout=60)
        return r.stdout.strip()

    def stop(self):
        if self.started:
            self.started = False
            subprocess.run(as_pg_user([pg_bin("pg_ctl"), "-D", self.data, "-m", "immediate",
                                       "stop"]), capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


def run(argv, what, timeout):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"bench: {what} exited with {r.returncode}: {r.stderr[-2000:]}")
    return r


def spawn(argv, log, cwd=None, env=None):
    """A child in a session (and process group) of its own, output to `log`."""
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                         stdout=open(log, "w"), stderr=subprocess.STDOUT,
                         start_new_session=True)
    STARTED.append(p)
    return p


def stop_group(p, timeout=30):
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        except ProcessLookupError:
            p.wait()


class ExecGrid:
    """PostgreSQL, BuildGrid with execution on it, and `workers` `kiln worker` processes started
    in `workspace` (whose host toolchains they probe) with `env` (KILN_CACHE, the Debian store).
    Everything is new: an empty CAS, action cache and job table. stop() ends all of it."""

    def __init__(self, base, kiln, workspace, env, workers=2):
        bgd = os.path.join(VENV, "bin/bgd")
        if not os.path.exists(bgd):
            raise SystemExit(f"bench: BuildGrid is not installed at {bgd} (scripts/setup installs it)")
        self.dir = os.path.join(base, f"buildgrid-exec-{time.time_ns()}")
        os.makedirs(self.dir)
        self.pg = None
        self.server = None
        self.workers = []
        try:
            self.pg = Postgres()
            run([bgd, "migrate", "apply", self.pg.url], "bgd migrate", timeout=300)
            self.port = free_port()
            cfg = os.path.join(self.dir, "buildgrid.yml")
            with open(cfg, "w") as f:
                f.write(exec_config(self.port, self.pg.url))
            self.log = os.path.join(self.dir, "bgd.log")
            self.server = spawn([bgd, "server", "start", cfg], self.log, cwd=self.dir)
            self.url = f"grpc://127.0.0.1:{self.port}"
            self._wait_listening()
            for i in range(workers):
                wid = f"w{i + 1}"
                work = os.path.join(self.dir, f"work-{wid}")
                os.makedirs(work)
                self.workers.append(spawn(
                    [kiln, "-C", workspace, "worker", "--server", self.url, "--id", wid,
                     "--work-dir", work], self.worker_log(wid), cwd=workspace, env=env))
            self._wait_bots(workers)
        except BaseException:
            self.stop()
            raise

    def worker_log(self, wid):
        return os.path.join(self.dir, f"{wid}.log")

    def leases(self):
        """Leases each worker took, by id (one log line per lease)."""
        out = {}
        for i in range(len(self.workers)):
            wid = f"w{i + 1}"
            with open(self.worker_log(wid), errors="replace") as f:
                out[wid] = f.read().count("running lease")
        return out

    def cpu(self):
        """CPU seconds (user + system) so far of BuildGrid, PostgreSQL and each worker: every
        process in its process group, the children it has reaped (a worker's compilers)
        included. Where a remote build's CPU goes on a machine whose cores it shares."""
        groups = {self.server.pid: "bgd"}
        groups.update({w.pid: f"w{i + 1}" for i, w in enumerate(self.workers)})
        try:
            with open(os.path.join(self.pg.data, "postmaster.pid")) as f:
                groups[int(f.readline())] = "postgres"  # the postmaster leads its session
        except (OSError, ValueError):
            pass
        tick = os.sysconf("SC_CLK_TCK")
        out = dict.fromkeys(groups.values(), 0.0)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            name = groups.get(int(fields[2]))  # pgrp
            if name is not None:
                out[name] += sum(int(x) for x in fields[11:15]) / tick  # utime..cstime
        return out

    def _wait_listening(self):
        # Bounded: Python's start-up on a busy machine takes seconds, never minutes.
        for _ in range(720):
            if self.server.poll() is not None:
                raise SystemExit(f"bench: bgd exited before serving; see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.25)
        raise SystemExit(f"bench: bgd never listened on {self.port}; see {self.log}")

    def _wait_bots(self, n):
        """Until the scheduler has a session for every worker (its `bots` table), so a timed
        build never waits for a worker to connect. Bounded by a deadline."""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            for w in self.workers:
                if w.poll() is not None:
                    raise SystemExit(f"bench: a kiln worker exited with {w.returncode}; "
                                     f"see {self.dir}/w*.log")
            try:
                if int(self.pg.query("select count(*) from bots") or 0) >= n:
                    return
            except SystemExit:
                pass  # the table appears with BuildGrid's first use of it
            time.sleep(0.5)
        raise SystemExit(f"bench: {n} kiln workers never registered with BuildGrid; "
                         f"see {self.dir}")

    def stop(self):
        for w in self.workers:
            stop_group(w)
        if self.server is not None:
            stop_group(self.server)
        if self.pg is not None:
            self.pg.stop()

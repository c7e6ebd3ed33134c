"""BuildGrid for the remote-cache benchmark: `bgd server start` on a free loopback port with an
in-memory CAS and action cache (the configuration tests/remote_cache/buildgrid.rs uses, with more
room), from the venv scripts/setup makes."""
import os
import signal
import socket
import subprocess
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

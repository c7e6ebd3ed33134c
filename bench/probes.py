"""Running things and measuring them: hyperfine for timings, a /proc sampler for one process's
own peak RSS, GNU time for what it calls the maximum RSS."""
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time

# Where hyperfine's JSON exports go (set by the driver to its temp dir).
EXPORT_DIR = None
_exports = 0


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def sh(cmd, **kw):
    """Runs a command (list or shell string), failing loudly; returns stdout."""
    kw.setdefault("check", True)
    r = subprocess.run(cmd, shell=isinstance(cmd, str), text=True, capture_output=True, **kw)
    return r.stdout


def uptime():
    return sh("uptime").strip()


# ---------------------------------------------------------------------------------------------
# Timing and memory probes


def hyperfine(commands, runs, warmup=0, prepare=None, shell=True, env=None, name="hf"):
    """Times commands with hyperfine; returns one dict per command (mean, stddev, min, max in s).
    `prepare` is one shell command for all, or a list with one per command."""
    global _exports
    _exports += 1
    out = os.path.join(EXPORT_DIR or tempfile.gettempdir(), f"{name}-{_exports}.json")
    args = ["hyperfine", "--style", "basic", "--runs", str(runs), "--warmup", str(warmup),
            "--export-json", out]
    if not shell:
        args.append("-N")
    if prepare is not None:
        for p in prepare if isinstance(prepare, list) else [prepare]:
            args += ["--prepare", p]
    args += commands
    r = subprocess.run(args, env=env, text=True, capture_output=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-3000:] + r.stderr[-3000:])
        raise SystemExit(f"bench: hyperfine failed for {commands}")
    return json.load(open(out))["results"]


def timed(cmd, env=None, cwd=None, check=True):
    """Wall time (s) of one run of `cmd` (argv list), output captured."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, text=True, capture_output=True)
    dt = time.perf_counter() - t0
    if check and r.returncode != 0:
        sys.stderr.write(r.stdout[-3000:] + r.stderr[-3000:])
        raise SystemExit(f"bench: {shlex.join(cmd)} exited with {r.returncode}")
    return dt, r


def peak_rss(cmd, env=None, cwd=None, interval=0.005):
    """Runs `cmd` and returns (wall s, own peak KiB, tree peak KiB, stdout).

    own: the process's VmHWM from /proc/PID/status, sampled every `interval` until it exits; the
    high-water mark only grows, so the last sample is the peak minus at most the final few ms.
    tree: what `/usr/bin/time -v` prints as "Maximum resident set size", i.e. ru_maxrss from
    wait4(): Linux folds the largest waited-for descendant (a compiler, strip) into it, so it is
    max(kiln, any child), not kiln's own. `cmd` runs under /usr/bin/time for that figure rather
    than being waited for here: a process forked by this Python interpreter would carry the
    interpreter's own RSS into its ru_maxrss (the old address space's high-water mark is kept
    at exec), which is not the build's.
    """
    fd, rss_file = tempfile.mkstemp(suffix=".rss")
    os.close(fd)
    t0 = time.perf_counter()
    p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file] + list(cmd), env=env,
                         cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    bufs = {"out": b"", "err": b""}

    def drain(stream, key):
        bufs[key] = stream.read()
    threads = [threading.Thread(target=drain, args=(p.stdout, "out")),
               threading.Thread(target=drain, args=(p.stderr, "err"))]
    for t in threads:
        t.start()
    own, child = 0, None
    while p.poll() is None:
        try:
            if child is None:
                with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                    child = (f.read().split() or [None])[0]
            if child is not None:
                with open(f"/proc/{child}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            own = max(own, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(interval)
    dt = time.perf_counter() - t0
    for t in threads:
        t.join()
    tree = int((open(rss_file).read().strip().splitlines() or ["0"])[-1])
    os.unlink(rss_file)
    if p.returncode != 0:
        sys.stderr.write(bufs["out"][-3000:].decode(errors="replace") +
                         bufs["err"][-3000:].decode(errors="replace"))
        raise SystemExit(f"bench: {shlex.join(cmd)} exited with {p.returncode}")
    return dt, own, tree, bufs["out"].decode(errors="replace")


def gnu_time_maxrss(cmd, env=None):
    """`/usr/bin/time -v`'s "Maximum resident set size" (KiB) for one run of `cmd`."""
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, env=env, text=True, capture_output=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-3000:])
        raise SystemExit(f"bench: {shlex.join(cmd)} exited with {r.returncode}")
    for line in r.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.split(":")[1])
    raise SystemExit("bench: /usr/bin/time -v printed no maximum RSS")



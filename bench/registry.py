"""Registries for the push benchmarks: the reference registry on a free loopback port, and an
OCI layout with one big layer to push."""
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
import zlib

# Every registry process started, so the driver can stop them whatever happens.
STARTED = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Registry:
    """`docker-registry serve` on a free loopback port with temporary storage; its access log
    (one line per request) goes to `self.log`."""

    def __init__(self, base, name):
        self.dir = os.path.join(base, f"registry-{name}-{time.time_ns()}")
        os.makedirs(self.dir)
        self.port = free_port()
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog: { level: error, accesslog: { disabled: false } }\n"
                    f"storage: {{ filesystem: {{ rootdirectory: {self.dir}/data }} }}\n"
                    f"http: {{ addr: 127.0.0.1:{self.port} }}\n")
        self.log = os.path.join(self.dir, "access.log")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=out,
                                         stderr=subprocess.STDOUT)
        STARTED.append(self.proc)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=1)
                return
            except Exception:
                time.sleep(0.1)
        raise SystemExit("bench: the registry did not start")

    def requests(self, since=0):
        """Requests by method in the access log after byte offset `since`, and the log size."""
        data = open(self.log, "rb").read()
        counts = {}
        for line in data[since:].decode(errors="replace").splitlines():
            for m in ("HEAD", "GET", "PUT", "POST", "PATCH", "DELETE"):
                if f'"{m} /v2/' in line:
                    counts[m] = counts.get(m, 0) + 1
        return counts, len(data)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def big_layout(dir, size=1 << 30):
    """An OCI layout with one layer: a tar holding `size` random bytes, gzip'd with stored
    (level 0) deflate blocks so writing it takes seconds; registries never decompress layers."""
    blobs = os.path.join(dir, "blobs/sha256")
    os.makedirs(blobs)
    tmp = os.path.join(dir, "layer.tmp")
    diff, dig = hashlib.sha256(), hashlib.sha256()
    comp = zlib.compressobj(0, zlib.DEFLATED, 31)
    with open(tmp, "wb") as out:
        def emit(raw):
            diff.update(raw)
            c = comp.compress(raw)
            dig.update(c)
            out.write(c)
        info = tarfile.TarInfo("data/random.bin")
        info.size, info.mode, info.mtime = size, 0o644, 0
        emit(info.tobuf(format=tarfile.USTAR_FORMAT))
        left = size
        rng = random.Random(7)
        while left:
            chunk = rng.randbytes(min(left, 8 << 20))
            emit(chunk)
            left -= len(chunk)
        pad = (512 - size % 512) % 512
        emit(b"\0" * (pad + 1024))
        c = comp.flush()
        dig.update(c)
        out.write(c)
    layer_size = os.path.getsize(tmp)
    os.rename(tmp, os.path.join(blobs, dig.hexdigest()))

    def put(obj):
        b = json.dumps(obj, separators=(",", ":")).encode()
        d = hashlib.sha256(b).hexdigest()
        open(os.path.join(blobs, d), "wb").write(b)
        return {"digest": f"sha256:{d}", "size": len(b)}
    config = put({"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff.hexdigest()}"]}})
    manifest = put({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                "digest": f"sha256:{dig.hexdigest()}", "size": layer_size}]})
    json.dump({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest}]},
        open(os.path.join(dir, "index.json"), "w"))
    open(os.path.join(dir, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
    return layer_size

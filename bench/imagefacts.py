"""What an image holds and what it would cost elsewhere: OCI layout reading, closure floors
(tar.gz of the image's own files), and a debian:12-slim style base estimated from this
machine's dpkg database (see METHOD_IMAGES in methods.py)."""
import json
import os
import shlex
import tempfile
import zlib

from probes import sh


def layout_manifest(layout):
    index = json.load(open(os.path.join(layout, "index.json")))
    d = index["manifests"][0]
    m = json.load(open(os.path.join(layout, "blobs/sha256", d["digest"].split(":")[1])))
    ref = d.get("annotations", {}).get("org.opencontainers.image.ref.name")
    return d["digest"], m, ref


def extract_image(layout, dest):
    _, m, _ = layout_manifest(layout)
    os.makedirs(dest)
    for l in m["layers"]:
        sh(["tar", "-xzf", os.path.join(layout, "blobs/sha256", l["digest"].split(":")[1]),
            "-C", dest])
    return m


def tar_gz_size(root, paths=None):
    """Bytes of `tar | gzip -6` of `root` (or of `paths` relative to it), sorted, owner 0."""
    opts = "--sort=name --owner=0 --group=0 --numeric-owner --mtime=@0"
    if paths is None:
        cmd = f"tar {opts} -cf - -C {shlex.quote(root)} . | gzip -6 | wc -c"
        return int(sh(cmd))
    with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as f:
        f.write("\n".join(p.lstrip("/") for p in paths) + "\n")
        lst = f.name
    cmd = (f"tar {opts} --no-recursion --ignore-failed-read -cf - -C {shlex.quote(root)} "
           f"-T {lst} 2>/dev/null | gzip -6 | wc -c")
    try:
        return int(sh(cmd))
    finally:
        os.unlink(lst)


def per_file_gzip(root):
    total = 0
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    c = zlib.compressobj(6, zlib.DEFLATED, 31)
                    total += len(c.compress(fh.read()) + c.flush())
    return total


SLIM_EXCLUDES = ("/usr/share/doc/", "/usr/share/man/", "/usr/share/info/", "/usr/share/locale/",
                 "/usr/share/groff/", "/usr/share/lintian/", "/usr/share/linda/")


def dpkg_db():
    fmt = "${Package}\t${Priority}\t${Pre-Depends}\t${Depends}\t${Provides}\t${db:Status-Status}\n"
    pkgs = {}
    provides = {}
    for line in sh(["dpkg-query", "-W", "-f", fmt]).splitlines():
        name, prio, pre, dep, prov, status = line.split("\t")
        if status != "installed":
            continue
        pkgs[name] = (prio, ", ".join(x for x in (pre, dep) if x))
        for p in filter(None, (x.strip().split(" ")[0] for x in prov.split(","))):
            provides.setdefault(p, name)
    return pkgs, provides


def dep_closure(seeds, pkgs, provides):
    """Installed packages reachable from `seeds` through Depends/Pre-Depends (first installed
    alternative), as apt would resolve them on this machine."""
    seen, todo = set(), [s for s in seeds if s in pkgs]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for clause in filter(None, (c.strip() for c in pkgs[p][1].split(","))):
            for alt in clause.split("|"):
                n = alt.strip().split(" ")[0].split(":")[0]
                n = n if n in pkgs else provides.get(n)
                if n:
                    todo.append(n)
                    break
    return seen


def package_files(pkg):
    for cand in (f"/var/lib/dpkg/info/{pkg}.list", f"/var/lib/dpkg/info/{pkg}:amd64.list"):
        if os.path.exists(cand):
            files = [l.strip() for l in open(cand) if l.strip() not in ("", "/.")]
            meta = [os.path.join("/var/lib/dpkg/info", f) for f in os.listdir("/var/lib/dpkg/info")
                    if f.rsplit(".", 1)[0] in (pkg, f"{pkg}:amd64")]
            return [f for f in files if not f.startswith(SLIM_EXCLUDES)] + meta
    return []

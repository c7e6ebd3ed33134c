#!/usr/bin/env python3
"""kiln's benchmarks: every figure is measured against its anchor in the same run and reported
as a ratio. Run through scripts/bench, which builds kiln and the two bench examples first.

Nothing here touches the repository's own out/ or the user's cache: the workspace (recipes,
toolchains, fixtures, scripts) is copied into a temporary directory, every kiln run gets a
private KILN_CACHE, registries are started on free loopback ports with temporary storage, and
generated build.ninja/Makefile files live in the temporary directory too.
"""
import argparse
import io
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
import time

import probes
from imagefacts import (dep_closure, dpkg_db, extract_image, layout_manifest, package_files,
                        per_file_gzip, tar_gz_size)
from methods import (METHOD_TOOLCHAIN, METHOD_COLD, METHOD_COMMON, METHOD_DEMO, METHOD_IMAGES, METHOD_LAYER,
                     METHOD_CACHE, METHOD_MEM, METHOD_NOOP, METHOD_PUSH, METHOD_REASSEMBLE, METHOD_SBOM,
                     METHOD_VERIFY, METHOD_WARM, METHOD_REMOTE, METHOD_MULTIARCH)
from probes import gnu_time_maxrss, hyperfine, log, peak_rss, sh, timed, uptime
import registry
from registry import Registry, big_layout
from remote_server import BuildGrid, ExecGrid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
# KILN_BENCH_BIN: another kiln binary to measure (one built with its own CARGO_TARGET_DIR).
KILN = os.environ.get("KILN_BENCH_BIN") or os.path.join(REPO, "target/release/kiln")
LAYER_BENCH = os.path.join(REPO, "target/release/examples/layer_bench")
PUSH_BENCH = os.path.join(REPO, "target/release/examples/push_bench")
# The same kiln with the hashing of cache reads compiled out (feature `bench-unverified`): the
# anchor of the verified-restore cost, built by scripts/bench; never used for anything else.
KILN_UNVERIFIED = os.path.join(REPO, "target/bench-unverified/release/kiln")
# Debian toolchain downloads, trees and roots: kept across runs (and shared with the tests) so
# that only the toolchain step's own "first fetch" row pays for the archive.
DEBIAN_STORE = os.environ.get("KILN_DEBIAN_CACHE") or (
    "/var/cache/kiln-test-debs/debian" if os.access("/var/cache", os.W_OK)
    else os.path.expanduser("~/.cache/kiln-test-debs/debian"))
STEPS = ["toolchain", "cold", "noop", "warm", "memory", "images", "reassemble", "layer", "push", "bigpush",
         "demo", "sbom", "verify", "cache", "remote", "multiarch"]


# ---------------------------------------------------------------------------------------------
# Results


class Results:
    def __init__(self):
        self.rows = []      # (measurement, kiln, anchor, ratio, target, verdict)
        self.sections = {}  # step -> markdown text (method + details)

    def row(self, what, kiln, anchor, ratio, target, ok):
        verdict = "n/a" if ok is None else ("met" if ok else "**missed**")
        self.rows.append((what, kiln, anchor, ratio, target, verdict))

    def table(self):
        lines = ["| measurement | kiln | anchor | ratio | target | |", "|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in self.rows]
        return "\n".join(lines)


def fmt_s(s):
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def fmt_hf(r):
    return f"{fmt_s(r['mean'])} ± {fmt_s(r['stddev'] or 0)}" if r.get("stddev") is not None \
        else fmt_s(r["mean"])


def mb(n):
    return f"{n / 1e6:.2f} MB"


# ---------------------------------------------------------------------------------------------
# Workspaces


class Workspace:
    """A copy of the repository's workspace files in a temp dir, with its own cache."""

    def __init__(self, name, root, cache):
        self.name, self.root, self.cache = name, root, cache

    def env(self, cache=None, **extra):
        e = dict(os.environ)
        e["KILN_CACHE"] = cache or self.cache
        e.setdefault("KILN_DEBIAN_CACHE", DEBIAN_STORE)
        e.update(extra)
        return e

    def kiln(self, *args):
        return [KILN, "-C", self.root] + list(args)

    def build(self, *args, cache=None):
        dt, r = timed(self.kiln("build", "-j2", "--json", *args), env=self.env(cache))
        return dt, json.loads(r.stdout)


def copy_workspace():
    ws = os.path.join(W.tmp, "ws")
    os.makedirs(ws)
    files = sh(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                "--", "recipes", "toolchains", "fixtures", "scripts", "kiln.lock"]).split("\0")
    for f in filter(None, files):
        src = os.path.join(REPO, f)
        if not os.path.lexists(src):
            continue  # deleted in the working tree
        dst = os.path.join(ws, f)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)
    # A git checkout of its own, so image labels have a revision and a commit time.
    git = ["git", "-C", ws, "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    sh(git[:3] + ["init", "-q"])
    sh(git + ["add", "-A"])
    sh(git + ["commit", "-qm", "bench snapshot", "--date=@1700000000"],
       env=dict(os.environ, GIT_COMMITTER_DATE="@1700000000"))
    return ws


# ---------------------------------------------------------------------------------------------
# 1. Cold build vs make/ninja running the same commands


def record_and_replay(w):
    """Builds `w` once with tool shims that log the commands, and generates build.ninja and a
    Makefile replaying them. Returns the directory holding both."""
    shims = os.path.join(W.tmp, f"shims-{w.name}")
    os.makedirs(shims)
    for tool in ("g++", "gcc", "ar", "gnatbind"):
        os.symlink(os.path.join(BENCH, "record-tool"), os.path.join(shims, tool))
    cache = os.path.join(W.tmp, f"cache-record-{w.name}")
    shutil.rmtree(os.path.join(w.root, "out"), ignore_errors=True)
    env = w.env(cache, PATH=shims + os.pathsep + os.environ["PATH"])
    # A workspace on kiln's built-in Debian toolchains runs its compilers in their root, out of
    # the shims' reach: record it with the same flags on the host's compilers (the fixtures'
    # host toolchain files), which is what ninja and make then replay.
    own_toolchains = os.path.isdir(os.path.join(w.root, "toolchains"))
    if not own_toolchains:
        shutil.copytree(os.path.join(REPO, "fixtures/engine/toolchains"),
                        os.path.join(w.root, "toolchains"))
    try:
        dt, own, tree, _ = peak_rss(w.kiln("build", "-j2", "--no-images"), env=env)
    finally:
        if not own_toolchains:
            shutil.rmtree(os.path.join(w.root, "toolchains"))
    W.record_mem[w.name] = (own, tree)
    replay = os.path.join(W.tmp, f"replay-{w.name}")
    msg = sh(["python3", os.path.join(BENCH, "replay.py"), w.root,
              os.path.join(shims, "commands.jsonl"), replay])
    log(f"{w.name}: recorded in {dt:.1f} s; {msg.strip()}")
    shutil.rmtree(cache)
    return replay


def cold(w, runs):
    replay = record_and_replay(w)
    W.replay[w.name] = replay
    # The workspace's own cache: emptied before every run, so after the last one it holds exactly
    # what out/ holds, which the later steps (no-op, warm after clean) start from.
    cache = w.cache
    out = os.path.join(w.root, "out")
    q = shlex.quote
    wipe = f"rm -rf {q(out)} {q(cache)}"
    wipe_ninja = f"{wipe} {q(w.root)}/.ninja_log {q(w.root)}/.ninja_deps"
    env = w.env(cache, LC_ALL="C", SOURCE_DATE_EPOCH="0")
    kiln = " ".join(q(a) for a in w.kiln("build", "-j2"))
    cmds = [f"ninja -C {q(w.root)} -f {q(replay)}/build.ninja -j2 >/dev/null",
            f"make -C {q(w.root)} -f {q(replay)}/Makefile -j2 -s",
            f"{kiln} --no-images >/dev/null"]
    img_runs = max(1, runs // 2)
    log(f"{w.name}: cold builds, {runs} run(s) each of ninja, make, kiln --no-images, "
        f"then {img_runs} of kiln with images")
    ninja, make, kno = hyperfine(cmds, runs, prepare=[wipe_ninja, wipe, wipe], env=env,
                                 name="cold")
    kimg, = hyperfine([f"{kiln} >/dev/null"], img_runs, prepare=wipe, env=env, name="cold-img")
    # The same cold build on a machine where kiln has run before: an empty cache except the
    # memoised toolchain probes (compiler hashes, --version, wx-config), which any earlier build
    # leaves behind.
    probes = os.path.join(W.tmp, f"probes-{w.name}")
    shutil.copytree(os.path.join(cache, "probes"), probes)
    keep_probes = f"{wipe} && mkdir -p {q(cache)} && cp -r {q(probes)} {q(cache)}/probes"
    kprobed, = hyperfine([f"{kiln} --no-images >/dev/null"], runs, prepare=keep_probes, env=env,
                         name="cold-probed")
    # The image phase on its own: binaries in place, no layer in the cache yet. (The difference
    # of two cold builds drowns it in the compilers' run-to-run noise.)
    W.image_phase[w.name], _ = timed(w.kiln("build", "-j2", "--json"), env=env)
    W.cold[w.name] = {"ninja": ninja, "make": make, "kiln": kno, "kiln_images": kimg}
    anchor = min(ninja["mean"], make["mean"])
    n_cmds = sum(1 for _ in open(os.path.join(replay, "build.ninja")) if _.startswith("build "))
    label = "fixtures/engine" if w.name == "engine" else "16 services"
    R.row(f"cold build, {label}, compile+link (`--no-images`) vs ninja -j2",
          fmt_hf(kno), fmt_hf(ninja), f"{kno['mean'] / ninja['mean']:.2f}×", "≤ 1.05×",
          kno["mean"] <= 1.05 * ninja["mean"])
    R.row(f"cold build, {label}, compile+link vs make -j2",
          fmt_hf(kno), fmt_hf(make), f"{kno['mean'] / make['mean']:.2f}×", "≤ 1.05×",
          kno["mean"] <= 1.05 * make["mean"])
    R.row(f"cold build, {label}, compile+link, toolchain probes already memoised, vs ninja",
          fmt_hf(kprobed), fmt_hf(ninja), f"{kprobed['mean'] / ninja['mean']:.2f}×",
          "(information)", None)
    R.row(f"cold build, {label}, with images vs the faster of ninja/make (compile+link only)",
          fmt_hf(kimg), fmt_s(anchor), f"{kimg['mean'] / anchor:.2f}×", "(information)", None)
    W.details.setdefault("cold", []).append(
        f"- {label}: {n_cmds} commands replayed. ninja {fmt_hf(ninja)}, make {fmt_hf(make)}, "
        f"kiln `--no-images` {fmt_hf(kno)} ({fmt_hf(kprobed)} with the toolchain probes "
        f"memoised), kiln with images {fmt_hf(kimg)} "
        f"(image phase alone, on built binaries with no layer cached: "
        f"{fmt_s(W.image_phase[w.name])}).")


# ---------------------------------------------------------------------------------------------
# 0. Toolchain roots from pinned Debian packages


def debs_in(blobs):
    """The .debs among a store's blobs (`blobs/<2 hex>/<hex>`; index files are there too)."""
    out = []
    for d, _, files in os.walk(blobs):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                if fh.read(8) == b"!<arch>\n":
                    out.append(p)
    return sorted(out)


def toolchain(ws, runs):
    fetch = " ".join(shlex.quote(a) for a in ws.kiln("toolchain", "fetch"))
    q = shlex.quote
    # First fetch from the archive into an empty store (information: the network decides).
    first = os.path.join(W.tmp, "store-first")
    dt, r = timed(ws.kiln("toolchain", "fetch"), env=ws.env(KILN_DEBIAN_CACHE=first))
    n_pkgs = len(debs_in(os.path.join(first, "blobs")))
    R.row(f"toolchain roots (gcc+wx, gnat) first fetched from the Debian archive, {n_pkgs} .debs",
          fmt_s(dt), "-", "-", "(information)", None)
    # From cached .debs: a store holding only the downloads (hardlinked), no tree, no root.
    blobs = os.path.join(first, "blobs")
    store = os.path.join(W.tmp, "store-debs")
    prep = f"rm -rf {q(store)} && mkdir -p {q(store)} && cp -al {q(blobs)} {q(store)}/blobs"
    env = ws.env(KILN_DEBIAN_CACHE=store, KILN_DEBIAN_MIRROR="http://127.0.0.1:9/debian")
    # The anchor: dpkg-deb unpacking the same .debs into one directory (what an apt-made root
    # costs without maintainer scripts).
    unpack = os.path.join(W.tmp, "dpkg-unpack")
    debs = " ".join(q(p) for p in debs_in(blobs))
    anchor_cmd = f"for d in {debs}; do dpkg-deb -x \"$d\" {q(unpack)}; done"
    kmat, dpkg = hyperfine([f"{fetch} >/dev/null", anchor_cmd], runs,
                           prepare=[prep, f"rm -rf {q(unpack)} && mkdir -p {q(unpack)}"],
                           env=env, name="materialise")
    R.row(f"toolchain roots materialised from cached .debs ({n_pkgs}), offline, vs dpkg-deb -x of them",
          fmt_hf(kmat), fmt_hf(dpkg), f"{kmat['mean'] / dpkg['mean']:.2f}×", "≤ 20 s",
          kmat["mean"] <= 20)
    again, = hyperfine([f"{fetch} >/dev/null"], max(3, runs * 3), env=env, name="materialised")
    R.row("toolchain roots already materialised (`kiln toolchain fetch`) vs the first materialisation",
          fmt_hf(again), fmt_hf(kmat), f"{again['mean'] / kmat['mean']:.3f}×", "≤ 1 s",
          again["mean"] <= 1)
    shutil.rmtree(first, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(unpack, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# 2. No-op build and 3. warm cache after clean


def noop(w, runs):
    replay = W.replay.get(w.name)
    w.build()  # kiln's state matches out/ (idempotent if cold left it built)
    cmds = [" ".join(w.kiln("build", "-j2")), " ".join(w.kiln("build", "-j2", "--no-images"))]
    if replay:
        ninja = ["ninja", "-C", w.root, "-f", f"{replay}/build.ninja", "-j2"]
        # ninja's log recorded output mtimes from its own last run; kiln has rewritten out/
        # since, so let ninja re-read them (what it would see had it built out/ itself).
        sh(ninja + ["-t", "restat"])
        dry = sh(ninja + ["-n"])
        if "no work to do" not in dry:
            log(f"{w.name}: bringing ninja's log up to date before its no-op")
            sh(ninja)
            w.build()
        cmds.append(" ".join(ninja))
    log(f"{w.name}: no-op builds ({runs} runs, 3 warm-up)")
    res = hyperfine(cmds, runs, warmup=3, shell=False, env=w.env(), name="noop")
    label, target = ("fixtures/engine", 0.020) if w.name == "engine" else ("16 services", 0.050)
    full, noimg = res[0], res[1]
    ninja_r = res[2] if replay else None
    for what, r in (("`kiln build`", full), ("`kiln build --no-images`", noimg)):
        R.row(f"no-op build, {label}, {what} vs ninja no-op", fmt_hf(r),
              fmt_hf(ninja_r) if ninja_r else "-",
              f"{r['mean'] / ninja_r['mean']:.1f}×" if ninja_r else "-",
              f"≤ {target * 1000:.0f} ms", r["mean"] <= target)
    W.noop[w.name] = full


def warm(w, runs):
    w.build()
    cmds = [" ".join(w.kiln("build", "-j2")) + " >/dev/null",
            " ".join(w.kiln("build", "-j2", "--no-images")) + " >/dev/null"]
    log(f"{w.name}: warm-cache builds after kiln clean ({runs} runs)")
    clean = " ".join(w.kiln("clean"))
    res = hyperfine(cmds, runs, prepare=clean, env=w.env(), name="warm")
    label = "fixtures/engine" if w.name == "engine" else "16 services"
    c = W.cold.get(w.name)
    for r, key, what in ((res[0], "kiln_images", "with images"), (res[1], "kiln", "--no-images")):
        if c:
            ratio = c[key]["mean"] / r["mean"]
            R.row(f"warm cache after `kiln clean`, {label}, {what} (anchor: kiln cold build)",
                  fmt_hf(r), fmt_hf(c[key]), f"{ratio:.0f}× faster", "≥ 20× faster", ratio >= 20)
        else:
            R.row(f"warm cache after `kiln clean`, {label}, {what}", fmt_hf(r), "-", "-",
                  "≥ 20× faster", None)
    W.warm[w.name] = res
    w.build()


# ---------------------------------------------------------------------------------------------
# 4. Peak memory of kiln itself


def memory(ws, engine):
    """kiln's own peak RSS in the builds that do the most: cold with images (fixtures here; the
    16 services' cold build with images runs inside `kiln verify`, probed in step 11, and their
    cold compile+link in the recording run of step 1), warm after clean, and no-op."""
    rows = []
    cache = os.path.join(W.tmp, "cache-mem")
    shutil.rmtree(os.path.join(engine.root, "out"), ignore_errors=True)
    cmd = engine.kiln("build", "-j2", "--json")
    dt, own, tree, _ = peak_rss(cmd, env=engine.env(cache))
    rows.append(("cold build with images, fixtures/engine", own, tree))
    shutil.rmtree(os.path.join(engine.root, "out"), ignore_errors=True)
    shutil.rmtree(cache)
    gt = gnu_time_maxrss(cmd, env=engine.env(cache))
    rows.append(("same cold build under `/usr/bin/time -v`", None, gt))
    shutil.rmtree(cache)
    engine.build()
    for w in (engine, ws):
        label = "fixtures/engine" if w.name == "engine" else "16 services"
        w.build()
        sh(w.kiln("clean"), env=w.env())
        dt, own, tree, _ = peak_rss(w.kiln("build", "-j2", "--json"), env=w.env())
        rows.append((f"warm build after clean, {label}", own, tree))
        dt, own, tree, _ = peak_rss(w.kiln("build", "-j2", "--json"), env=w.env())
        rows.append((f"no-op build, {label}", own, tree))
    W.mem_rows = rows


def memory_row():
    """The summary row, once every probed run (recording, memory, verify) is in."""
    owns = [(r[1], r[0]) for r in getattr(W, "mem_rows", []) if r[1] is not None]
    owns += [(own, f"cold --no-images build, {n}") for n, (own, _) in W.record_mem.items()]
    if getattr(W, "verify_mem", None):
        owns.append((W.verify_mem, "kiln verify, 16 services"))
    if not owns:
        return
    worst, what = max(owns)
    R.row(f"peak RSS of the kiln process itself (VmHWM), worst build ({what})",
          f"{worst / 1024:.1f} MiB", "-", "-", "< 50 MB", worst * 1024 < 50e6)


# ---------------------------------------------------------------------------------------------
# 5. Images: sizes vs budgets, closure floor, debian:12-slim style anchor


def images(ws, engine):
    # Budgets of the 16 services.
    _, j = ws.build()
    fr = [(t["image"]["compressed_size"] / t["image"]["budget"], t["name"], t["image"])
          for t in j["targets"] if t.get("image")]
    fr.sort(reverse=True)
    worst = fr[0]
    W.image_sizes = [(n, i["compressed_size"], i["budget"]) for _, n, i in sorted(fr, key=lambda x: x[1])]
    R.row(f"largest image / its budget, 16 services ({worst[1]})", mb(worst[2]["compressed_size"]),
          mb(worst[2]["budget"]), f"{worst[0]:.3f}", "< 0.1", worst[0] < 0.1)

    _, je = engine.build()
    pkgs, provides = dpkg_db()
    seeds = [p for p, (prio, _) in pkgs.items() if prio == "required"] + ["apt"]
    slim = dep_closure(seeds, pkgs, provides)
    slim_files = [f for p in sorted(slim) for f in package_files(p)]
    slim_gz = tar_gz_size("/", slim_files)
    W.slim = (len(slim), slim_gz)
    W.floor_rows = []
    for svc, limit in (("hello", 8e6), ("geometry", 6e6)):
        t = next(t for t in je["targets"] if t["name"] == svc)
        layout = t["image"]["layout"]
        tree = os.path.join(W.tmp, f"img-{svc}")
        m = extract_image(layout, tree)
        layers = sum(l["size"] for l in m["layers"])
        one = tar_gz_size(tree)
        each = per_file_gzip(tree)
        floor = min(one, each)
        status_d = os.path.join(tree, "var/lib/dpkg/status.d")
        runtime_pkgs = sorted(os.listdir(status_d)) if os.path.isdir(status_d) else []
        extra = sorted(dep_closure(runtime_pkgs, pkgs, provides) - slim)
        extra_gz = tar_gz_size("/", [f for p in extra for f in package_files(p)]) if extra else 0
        top = m["layers"][-1]["size"]
        anchor = slim_gz + extra_gz + top
        W.floor_rows.append((svc, layers, one, each, runtime_pkgs, extra, extra_gz, top, anchor))
        lang = "C++" if svc == "hello" else "Ada"
        if svc == "hello":
            R.row(f"{lang} fixture image `{svc}` vs its closure floor (one tar.gz -6)", mb(layers),
                  mb(floor), f"{layers / floor:.3f}×", "≤ 1.1×", layers <= 1.1 * floor)
        R.row(f"{lang} fixture image `{svc}` size", mb(layers), "-", "-",
              f"< {limit / 1e6:.0f} MB", layers < limit)
        R.row(f"{lang} fixture image `{svc}` vs same binary on a debian:12-slim style base",
              mb(layers), mb(anchor), f"{layers / anchor:.3f}×", "(information)", None)
        shutil.rmtree(tree)


# ---------------------------------------------------------------------------------------------
# 6. Reassembly after one edit


def layer_digests(ws):
    out = {}
    for svc in sorted(os.listdir(os.path.join(ws.root, "out/images"))):
        if not os.path.isdir(os.path.join(ws.root, "out/images", svc)):
            continue  # <service>.sizes.json and other files beside the layouts
        _, m, _ = layout_manifest(os.path.join(ws.root, "out/images", svc))
        out[svc] = [l["digest"] for l in m["layers"]]
    return out


def reassemble(ws):
    ws.build()
    edits = [("one service source (config-service main.cpp)",
              "fixtures/services/config-service/src/main.cpp"),
             ("one .cpp of widget-core-lib (widget.cpp)",
              "fixtures/libs/widget-core-lib/src/widget.cpp")]
    W.reassemble = []
    for what, rel in edits:
        path = os.path.join(ws.root, rel)
        before = layer_digests(ws)
        original = open(path, "rb").read()
        marker = f"kiln_bench_marker_{int(time.time() * 1000)}"
        try:
            with open(path, "ab") as f:
                # A symbol that reaches the linked output, so the binary really changes.
                f.write(f'\nextern "C" __attribute__((used)) const char {marker}[] = "{marker}";\n'
                        .encode())
            dt, j = ws.build()
            after = layer_digests(ws)
        finally:
            with open(path, "wb") as f:
                f.write(original)
        changed = {s: sum(1 for a, b in zip(before[s], after[s]) if a != b) +
                   abs(len(before[s]) - len(after[s])) for s in before}
        ran = sum(t["actions_run"] for t in j["targets"])
        touched = sorted(s for s, n in changed.items() if n)
        W.reassemble.append((what, dt, touched, changed, ran))
        total = sum(changed.values())
        if "service" in what:
            top_only = touched == ["config-service"] and all(
                a == b for a, b in zip(before["config-service"][:-1], after["config-service"][:-1]))
            R.row("one service edited: rebuild + reassemble all 16, changed layers",
                  f"{fmt_s(dt)}, {total} layer(s) in {len(touched)} image(s)", "-", "-",
                  "only that service's top layer", top_only)
        else:
            R.row("one widget-core-lib .cpp edited: until all affected images are rebuilt",
                  f"{fmt_s(dt)}, {total} layer(s) in {len(touched)} image(s)", "-", "-",
                  "(information)", None)
        ws.build()  # back to the unedited state (served from the cache)


# ---------------------------------------------------------------------------------------------
# 7. Layer writing throughput


def make_tree(root, total=200 * 1000 * 1000):
    """A deterministic tree: half text-like (compressible), half random bytes, in files from
    4 KiB to 16 MiB."""
    rng = random.Random(20240601)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
             for _ in range(5000)]
    # Text is built from a pool of pseudo-random lines so generation stays fast.
    lines = [b" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) + b"\n"
             for _ in range(20000)]
    written, n = 0, 0
    while written < total:
        size = rng.choices([4096, 16384, 65536, 262144, 1 << 20, 4 << 20, 16 << 20],
                           weights=[30, 25, 20, 12, 8, 4, 1])[0]
        size = min(size, total - written)
        d = os.path.join(root, f"d{n % 17:02d}", f"e{n % 5}")
        os.makedirs(d, exist_ok=True)
        kind = "txt" if n % 2 == 0 else "bin"
        with open(os.path.join(d, f"f{n:05d}.{kind}"), "wb") as f:
            if kind == "bin":
                f.write(rng.randbytes(size))
            else:
                buf = io.BytesIO()
                while buf.tell() < size:
                    buf.write(b"".join(rng.choices(lines, k=256)))
                f.write(buf.getvalue()[:size])
        written += size
        n += 1
    return written, n


def layer(runs):
    tree = os.path.join(W.tmp, "tree")
    size, files = make_tree(tree)
    cache = os.path.join(W.tmp, "layer-cache")
    q = shlex.quote
    anchor = (f"tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - -C {q(tree)} ."
              " | gzip -6 | sha256sum >/dev/null")
    kiln = f"{q(LAYER_BENCH)} {q(tree)} {q(cache)} >/dev/null"
    log(f"layer: {size / 1e6:.0f} MB in {files} files, {runs} run(s) each")
    res = hyperfine([kiln, anchor], runs, warmup=1, prepare=f"rm -rf {q(cache)}", name="layer")
    shutil.rmtree(cache, ignore_errors=True)
    j = json.loads(sh([LAYER_BENCH, tree, cache]))
    gz = int(sh(f"tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - -C {q(tree)} . | gzip -6 | wc -c"))
    k, a = res
    speed = a["mean"] / k["mean"]
    W.layer = (size, files, k, a, j, gz)
    R.row("layer writing, 200 MB tree (digest files + tar + gzip -6 + sha256 ×2 + fsync) vs "
          "`tar \\| gzip -6 \\| sha256sum`", f"{fmt_hf(k)} ({size / k['mean'] / 1e6:.0f} MB/s)",
          f"{fmt_hf(a)} ({size / a['mean'] / 1e6:.0f} MB/s)", f"{speed:.2f}× the anchor's speed",
          "≥ 1.0×", speed >= 1.0)
    shutil.rmtree(tree)
    shutil.rmtree(cache, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# 8. Push


def push(ws, runs):
    ws.build()
    layouts = sorted(s for s in os.listdir(os.path.join(ws.root, "out/images"))
                     if os.path.isdir(os.path.join(ws.root, "out/images", s)))
    refs = {s: layout_manifest(os.path.join(ws.root, "out/images", s))[2] for s in layouts}
    kiln_t, noattach_t, skopeo_t, repush_t, repush_na_t = [], [], [], [], []
    for i in range(runs):
        reg = Registry(W.tmp, "kiln")
        dt, _ = timed(ws.kiln("push", "--to", f"127.0.0.1:{reg.port}/bench", "--jobs", "4",
                              "--json"), env=ws.env())
        kiln_t.append(dt)
        for _ in range(3 if runs > 1 else 1):
            _, since = reg.requests()
            dt, _ = timed(ws.kiln("push", "--to", f"127.0.0.1:{reg.port}/bench", "--jobs", "4",
                                  "--json"), env=ws.env())
            repush_t.append(dt)
            W.repush_requests = reg.requests(since)[0]
        reg.stop()
        reg = Registry(W.tmp, "kiln-noattach")
        dt, _ = timed(ws.kiln("push", "--to", f"127.0.0.1:{reg.port}/bench", "--jobs", "4",
                              "--no-attach", "--json"), env=ws.env())
        noattach_t.append(dt)
        for _ in range(3 if runs > 1 else 1):
            _, since = reg.requests()
            dt, _ = timed(ws.kiln("push", "--to", f"127.0.0.1:{reg.port}/bench", "--jobs", "4",
                                  "--no-attach", "--json"), env=ws.env())
            repush_na_t.append(dt)
            W.repush_na_requests = reg.requests(since)[0]
        reg.stop()
        reg = Registry(W.tmp, "skopeo")
        t0 = time.perf_counter()
        for s in layouts:
            src = f"oci:{ws.root}/out/images/{s}" + (f":{refs[s]}" if refs[s] else "")
            sh(["skopeo", "copy", "-q", "--dest-tls-verify=false", src,
                f"docker://127.0.0.1:{reg.port}/anchor/{s}:{refs[s] or 'latest'}"])
        skopeo_t.append(time.perf_counter() - t0)
        reg.stop()
    mean = lambda v: sum(v) / len(v)
    k, na, sk, rp = mean(kiln_t), mean(noattach_t), mean(skopeo_t), mean(repush_t)
    rpn = mean(repush_na_t)
    noop = W.noop.get("ws")
    if not noop:  # the up-to-date check kiln push starts with, timed on its own
        noop = hyperfine([" ".join(ws.kiln("build", "-j2"))], 10, warmup=3, shell=False,
                         env=ws.env(), name="noop-push")[0]
    W.push = (kiln_t, noattach_t, skopeo_t, repush_t, noop, repush_na_t)
    R.row("push 16 images to an empty registry (`--jobs 4`, with SBOM/provenance referrers) "
          "vs skopeo copy one by one", fmt_s(k), fmt_s(sk), f"{k / sk:.2f}×", "≤ 0.5×", k <= 0.5 * sk)
    R.row("push 16 images, `--no-attach` (images only, like skopeo)", fmt_s(na), fmt_s(sk),
          f"{na / sk:.2f}×", "≤ 0.5×", na <= 0.5 * sk)
    for what, t in (("", rp), (", `--no-attach`", rpn)):
        net = t - noop["mean"]
        R.row(f"re-push unchanged{what}: total / network part (total − no-op `kiln build`)",
              f"{fmt_s(t)} / {fmt_s(max(net, 0))}", "-", "-", "network part < 100 ms",
              net < 0.100)


def bigpush():
    layout = os.path.join(W.tmp, "big-layout")
    size = big_layout(layout)
    reg = Registry(W.tmp, "big")
    dt, own, tree, out = peak_rss([PUSH_BENCH, layout, f"127.0.0.1:{reg.port}", "bench/big", "v1"])
    reg.stop()
    shutil.rmtree(layout)
    W.bigpush = (size, dt, own, tree)
    R.row("peak RSS pushing a 1 GiB layer (`registry::push_all`)", f"{own / 1024:.1f} MiB",
          "-", "-", "< 64 MB", own * 1024 < 64e6)


# ---------------------------------------------------------------------------------------------
# 9. Demo, 10. SBOM, 11. verify


def demo(ws, runs):
    ws.build()
    env = ws.env(KILN=KILN, JOBS="2")
    times = []
    for i in range(runs):
        dt, r = timed([os.path.join(ws.root, "scripts/demo")], env=env, cwd=ws.root, check=False)
        if r.returncode != 0:
            W.demo_failure = (r.stdout[-2000:] + r.stderr[-2000:])
            log("demo failed; its output is in BENCHMARKS.md")
            R.row("`scripts/demo` with a warm cache", f"failed after {fmt_s(dt)}", "-", "-",
                  "(information)", False)
            return
        times.append(dt)
    W.demo = times
    R.row("`scripts/demo` with a warm build cache" + (" (first run / repeat)" if runs > 1 else ""),
          " / ".join(fmt_s(t) for t in times), "-", "-", "(information)", None)


def sbom():
    for name, label in (("engine", "fixtures/engine"), ("ws", "16 services")):
        if name in W.image_phase:
            R.row(f"image phase alone (closure, strip, layers, status.d, SBOM, provenance), "
                  f"{label}", fmt_s(W.image_phase[name]), "-", "-", "SBOM share not separable",
                  None)


def verify(ws):
    ws.build()
    dt, own, tree, out = peak_rss(ws.kiln("verify", "-j2", "--json"), env=ws.env())
    W.verify = (dt, own)
    c = W.cold.get("ws")
    if c:
        a = c["kiln_images"]["mean"]
        R.row("`kiln verify` of 16 services vs a cold clean build (kiln, with images)",
              fmt_s(dt), fmt_s(a), f"{dt / a:.2f}×", "(information)", None)
    else:
        R.row("`kiln verify` of 16 services", fmt_s(dt), "-", "-", "(information)", None)
    W.verify_mem = own


# ---------------------------------------------------------------------------------------------
# 12. The cache: what verified restores cost, and garbage collection of 1 GB


def cache(ws, runs):
    ws.build()
    log(f"verified vs unverified restores, warm build after kiln clean ({runs} runs)")
    verified = " ".join(ws.kiln("build", "-j2")) + " >/dev/null"
    unverified = " ".join([KILN_UNVERIFIED] + ws.kiln("build", "-j2")[1:]) + " >/dev/null"
    res = hyperfine([verified, unverified], runs, warmup=1, prepare=" ".join(ws.kiln("clean")),
                    env=ws.env(), name="verify-cost")
    ratio = res[0]["mean"] / res[1]["mean"]
    R.row("warm cache after `kiln clean`, 16 services, with images: every restore verified vs "
          "hashing compiled out", fmt_hf(res[0]), fmt_hf(res[1]), f"{ratio:.2f}×", "≤ 1.1×",
          ratio <= 1.1)
    ws.build()

    pristine = os.path.join(W.tmp, "cache-gc-pristine")
    shutil.copytree(ws.cache, pristine, symlinks=True)
    total, files = fill_cas(pristine, 1_000_000_000)
    work = os.path.join(W.tmp, "cache-gc")
    prepare = f"rm -rf {shlex.quote(work)} && cp -al {shlex.quote(pristine)} {shlex.quote(work)}"
    env = dict(os.environ, KILN_CACHE=work)
    log(f"gc of a {mb(total)} cache ({files} files), {runs} runs")
    res = hyperfine([f"{KILN} cache gc --max-size 500MB --grace 0s >/dev/null",
                     f"du -sb {shlex.quote(work)} >/dev/null"], runs, prepare=prepare, env=env,
                    name="gc")
    R.row(f"`kiln cache gc --max-size 500MB` of a {mb(total)} cache ({files} files) vs `du -sb` "
          "walking the same tree", fmt_hf(res[0]), fmt_hf(res[1]),
          f"{res[0]['mean'] / res[1]['mean']:.1f}×", "(information)", None)
    sh(["bash", "-c", prepare])
    dt, r = timed([KILN, "cache", "gc", "--max-size", "500MB", "--grace", "0s"], env=env)
    left = int(sh(["du", "-sb", os.path.join(work, "cas")]).split()[0])
    if left > 500_000_000:
        raise SystemExit(f"bench: gc left {left} bytes of blobs, over its 500 MB limit")
    shutil.rmtree(work)
    shutil.rmtree(pristine)


def fill_cas(cache_dir, size):
    """Adds random CAS blobs, named by their digest, until the cache holds `size` bytes; their
    mtimes are spread over the last 30 days so LRU order is well defined. Returns (bytes, files
    added)."""
    import hashlib
    rng = random.Random(14)
    total = int(sh(["du", "-sb", cache_dir]).split()[0])
    files = 0
    base = time.time() - 30 * 86400
    while total < size:
        n = int(4096 * (512 ** rng.random()))  # log-uniform, 4 KiB .. 2 MiB
        data = rng.randbytes(n)
        hexd = hashlib.sha256(data).hexdigest()
        d = os.path.join(cache_dir, "cas", hexd[:2])
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, hexd)
        with open(path, "wb") as f:
            f.write(data)
        t = base + rng.random() * 29 * 86400
        os.utime(path, (t, t))
        total += n
        files += 1
    return total, files


# ---------------------------------------------------------------------------------------------
# Report


# ---------------------------------------------------------------------------------------------
# 13. The remote cache (BuildGrid)


def remote(w, runs):
    """A checkout builds the 16 services against an empty BuildGrid (filling it), then another
    checkout at another path, with an empty local cache each time, builds from it."""
    bg = BuildGrid(W.tmp)
    try:
        q = shlex.quote
        copies = {}
        for name in ("remote-a", "remote-b"):
            root = os.path.join(W.tmp, name, "ws")
            shutil.copytree(w.root, root, symlinks=True,
                            ignore=shutil.ignore_patterns("out", ".ninja_log", ".ninja_deps"))
            copies[name] = Workspace(name, root, os.path.join(W.tmp, name, "cache"))
        a, b = copies["remote-a"], copies["remote-b"]
        env = dict(LC_ALL="C", SOURCE_DATE_EPOCH="0")
        log(f"remote: filling BuildGrid ({bg.url}) with a cold build of the 16 services")
        fill, r = timed(a.kiln("build", "-j2", "--json", "--remote-cache", bg.url),
                        env=a.env(**env))
        filled = json.loads(r.stdout)
        uploads = (filled.get("remote") or {}).get("uploads", 0)
        blobs_filled = (filled.get("remote") or {}).get("blobs_uploaded", 0)
        out_b = os.path.join(b.root, "out")
        from_remote = " ".join(q(x) for x in b.kiln("build", "-j2", "--remote-cache", bg.url))
        from_local = " ".join(q(x) for x in b.kiln("build", "-j2"))
        log(f"remote: fresh workspace + empty local cache from the remote, {runs} runs; "
            f"anchor: the same from a warm local cache")
        rem, loc = hyperfine(
            [f"KILN_CACHE={q(b.cache)} {from_remote} >/dev/null",
             f"KILN_CACHE={q(a.cache)} {from_local} >/dev/null"],
            runs, prepare=[f"rm -rf {q(out_b)} {q(b.cache)}", f"rm -rf {q(out_b)}"],
            env=b.env(**env), name="remote")
        # One more, reported: what it ran and what it stored on the server.
        sh(["rm", "-rf", out_b, b.cache])
        _, r = timed(b.kiln("build", "-j2", "--json", "--remote-cache", bg.url), env=b.env(**env))
        again = json.loads(r.stdout)
        ran = sum(t["actions_run"] for t in again["targets"])
        served = sum(t["actions_remote"] for t in again["targets"])
        stored = (again.get("remote") or {}).get("uploads", 0)
        blobs = (again.get("remote") or {}).get("blobs_uploaded", -1)
        R.row("fresh workspace + empty local cache, warm remote cache (BuildGrid), 16 services "
              "with images, vs the same from a warm local cache", fmt_hf(rem), fmt_hf(loc),
              f"{rem['mean'] / loc['mean']:.2f}×", "≤ 3 s", rem["mean"] <= 3.0)
        R.row("second identical build from the remote: actions run / blobs uploaded",
              f"{ran} / {blobs}", "-", "-", "0 / 0", ran == 0 and blobs == 0)
        W.details["remote"] = (
            f"- filling build (cold, empty local cache, uploading): {fmt_s(fill)}, "
            f"{uploads} action result(s) and {blobs_filled} blob(s) stored.\n"
            f"- the reported build: {served} action(s) served by the remote cache, {ran} run, "
            f"{stored} action result(s) and {blobs} blob(s) uploaded.\n")
    finally:
        bg.stop()


def child_cpu():
    """User + system CPU seconds of this process's reaped children so far."""
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def per_action(doc):
    """Mean wall time of one action in a `kiln build --json` document, in seconds."""
    n = sum(len(t.get("actions", [])) for t in doc["targets"])
    return sum(t.get("duration_ms", 0) for t in doc["targets"]) / 1000 / max(n, 1)


# Actions the remote-exec build keeps in flight: more than the two workers run at once, so
# that uploading, queueing and downloading overlap with execution, as any REAPI client does.
REMOTE_EXEC_JOBS = int(os.environ.get("KILN_BENCH_REMOTE_JOBS", "8"))


def remote_exec(w, runs):
    """The 16 services built cold with `--remote-exec` on BuildGrid with two local `kiln worker`
    processes, against the same cold build run locally with -j2, alternating, same run. Every
    remote run gets a new PostgreSQL, BuildGrid and workers (an empty action cache, CAS and job
    table: every action really executes), started and stopped outside the timing."""
    root = os.path.join(W.tmp, "remote-exec", "ws")
    shutil.copytree(w.root, root, symlinks=True,
                    ignore=shutil.ignore_patterns("out", ".ninja_log", ".ninja_deps"))
    ws = Workspace("remote-exec", root, os.path.join(W.tmp, "remote-exec", "cache"))
    out = os.path.join(root, "out")
    worker_cache = os.path.join(W.tmp, "remote-exec", "worker-cache")
    env = ws.env(LC_ALL="C", SOURCE_DATE_EPOCH="0")
    local_t, remote_t, counts = [], [], []
    log(f"remote exec: {runs} cold build(s) each, with images: local -j2, then --remote-exec on "
        f"BuildGrid with 2 local kiln workers (a new server and workers per run)")
    for i in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(ws.cache, ignore_errors=True)
        c0 = child_cpu()
        dt, r = timed(ws.kiln("build", "-j2", "--json"), env=env)
        local_t.append(dt)
        local_cpu = child_cpu() - c0
        local_per = per_action(json.loads(r.stdout))
        log(f"remote exec: run {i + 1}: local -j2 {fmt_s(dt)}, {local_cpu:.1f} s CPU outside "
            f"sandboxes, {fmt_s(local_per)} per action")

        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(ws.cache, ignore_errors=True)
        shutil.rmtree(worker_cache, ignore_errors=True)
        grid = ExecGrid(os.path.join(W.tmp, "remote-exec"), KILN, root,
                        ws.env(worker_cache, LC_ALL="C"))
        try:
            idle = grid.cpu()
            c0 = child_cpu()
            dt, r = timed(ws.kiln("build", f"-j{REMOTE_EXEC_JOBS}", "--json", "--remote-exec",
                                  grid.url), env=env)
            client = child_cpu() - c0
            busy = grid.cpu()
            leases = grid.leases()
        finally:
            grid.stop()
        cpu = {"kiln build": client, **{k: busy[k] - idle.get(k, 0.0) for k in busy}}
        log(f"remote exec: run {i + 1}: --remote-exec {fmt_s(dt)}; CPU s outside sandboxes: "
            + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))
        doc = json.loads(r.stdout)
        err = (doc.get("remote") or {}).get("error")
        acts = [a for t in doc["targets"] for a in t.get("actions", [])]
        by_source = {}
        for a in acts:
            by_source[a["source"]] = by_source.get(a["source"], 0) + 1
        rexec = sum(t.get("actions_remote_exec", 0) for t in doc["targets"])
        if err is not None:
            raise SystemExit(f"bench: remote execution fell back to local: {err}")
        if rexec == 0 or by_source.get("remote-exec", 0) != rexec:
            raise SystemExit(f"bench: no action ran remotely ({rexec}; sources {by_source})")
        if sum(leases.values()) < rexec:
            raise SystemExit(f"bench: the workers took {leases} leases for {rexec} remotely "
                             "executed actions")
        remote_t.append(dt)
        remote_per = per_action(doc)
        counts.append((rexec, by_source, leases, cpu, local_cpu, local_per, remote_per))
        log(f"remote exec: run {i + 1}: {rexec} action(s) executed remotely; sources "
            f"{by_source}; leases {leases}; {fmt_s(remote_per)} per action")

    def stats(ts):
        mean = sum(ts) / len(ts)
        sd = (sum((t - mean) ** 2 for t in ts) / (len(ts) - 1)) ** 0.5 if len(ts) > 1 else None
        return {"mean": mean, "stddev": sd}
    kiln, anchor = stats(remote_t), stats(local_t)
    ratio = kiln["mean"] / anchor["mean"]
    R.row("cold build, 16 services with images, remote execution on BuildGrid with 2 local kiln "
          "workers vs local -j2", fmt_hf(kiln), fmt_hf(anchor), f"{ratio:.2f}×", "≤ 1.15×",
          ratio <= 1.15)
    rexec, by_source, leases, cpu, local_cpu, local_per, remote_per = counts[-1]
    W.details["remote-exec"] = (
        f"- remote execution: {', '.join(fmt_s(t) for t in remote_t)} against local -j2 "
        f"{', '.join(fmt_s(t) for t in local_t)}; last run: {rexec} action(s) executed "
        f"remotely, {len(acts)} in all by source {by_source}; leases per worker {leases}. "
        f"Mean time of one action (its `duration_ms`, Execute round trip included): "
        f"{fmt_s(remote_per)} remote, {fmt_s(local_per)} local. CPU seconds of that remote "
        f"build outside the sandboxed commands (bubblewrap's PID namespace hides those from "
        f"getrusage): " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
        + f" (total {sum(cpu.values()):.1f}), against {local_cpu:.1f} for the local build.\n")


def pushed_size(layout):
    """Config plus layers of the single image in an OCI layout, as a registry stores them."""
    def blob(d):
        return os.path.join(layout, "blobs", "sha256", d.split(":", 1)[1])
    index = json.load(open(os.path.join(layout, "index.json")))
    m = json.load(open(blob(index["manifests"][0]["digest"])))
    return m["config"]["size"] + sum(l["size"] for l in m["layers"])


def multiarch(w, runs):
    """The 16 services for linux/amd64 and linux/arm64 from one build (cross compilers, arm64
    runtime packages), against the same workspace for amd64 alone, both cold with images and
    their toolchain roots materialised; then the no-op of both platforms, and each arm64 image's
    size against its amd64 sibling."""
    q = shlex.quote
    spaces = {}
    for name in ("amd64-only", "two-platform"):
        root = os.path.join(W.tmp, name, "ws")
        shutil.copytree(w.root, root, symlinks=True,
                        ignore=shutil.ignore_patterns("out", ".ninja_log", ".ninja_deps"))
        spaces[name] = Workspace(name, root, os.path.join(W.tmp, name, "cache"))
    one, both = spaces["amd64-only"], spaces["two-platform"]
    with open(os.path.join(both.root, "kiln.toml"), "a") as f:
        f.write('platforms = ["linux/amd64", "linux/arm64"]\n')
    env = dict(LC_ALL="C", SOURCE_DATE_EPOCH="0")
    for x in (one, both):
        # Pins and roots first, untimed: the rows compare builds, not downloads.
        timed(x.kiln("toolchain", "fetch"), env=x.env(**env))
    wipe = [f"rm -rf {q(os.path.join(x.root, 'out'))} {q(x.cache)}" for x in (one, both)]
    cmd = [f"KILN_CACHE={q(x.cache)} {' '.join(q(a) for a in x.kiln('build', '-j2'))} >/dev/null"
           for x in (one, both)]
    log(f"multiarch: cold 16 services, amd64 alone vs amd64 + arm64, {runs} run(s) each")
    r_one, r_both = hyperfine(cmd, runs, prepare=wipe, env=both.env(**env), name="multiarch")
    R.row("cold build, 16 services with images, linux/amd64 + linux/arm64 vs linux/amd64 alone",
          fmt_hf(r_both), fmt_hf(r_one), f"{r_both['mean'] / r_one['mean']:.2f}×", "≤ 2.1×",
          r_both["mean"] <= 2.1 * r_one["mean"])
    noop_runs = 10 if runs < 2 else 30
    log(f"multiarch: no-op of both platforms, {noop_runs} runs, 3 warm-up")
    n_both, n_one = hyperfine([" ".join(both.kiln("build", "-j2")), " ".join(one.kiln("build", "-j2"))],
                              noop_runs, warmup=3, shell=False, env=both.env(**env),
                              name="multiarch-noop")
    R.row("no-op build, 16 services, linux/amd64 + linux/arm64 vs amd64 alone", fmt_hf(n_both),
          fmt_hf(n_one), f"{n_both['mean'] / n_one['mean']:.1f}×", "≤ 60 ms",
          n_both["mean"] <= 0.060)
    sizes = []
    arm_dir = os.path.join(both.root, "out/linux-arm64/images")
    # Layouts only: the directory also holds each image's `<service>.sizes.json`.
    for svc in sorted(e for e in os.listdir(arm_dir) if os.path.isdir(os.path.join(arm_dir, e))):
        arm = pushed_size(os.path.join(both.root, "out/linux-arm64/images", svc))
        amd = pushed_size(os.path.join(both.root, "out/linux-amd64/images", svc))
        sizes.append((abs(arm / amd - 1), svc, arm, amd))
    worst = max(sizes)
    R.row(f"arm64 image vs its amd64 sibling, the furthest of {len(sizes)} ({worst[1]})",
          mb(worst[2]), mb(worst[3]), f"{worst[2] / worst[3]:.3f}×", "within 10%",
          worst[0] <= 0.10)
    W.details["multiarch"] = (
        "- each arm64 image / its amd64 sibling: "
        + ", ".join(f"{svc} {arm / amd:.3f}" for _, svc, arm, amd in sorted(sizes, key=lambda x: x[1]))
        + ".\n")


def version(cmd):
    try:
        return sh(cmd, check=False).strip().splitlines()[0]
    except Exception:
        return "?"


def machine():
    mem = next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1]
    return [
        ("cores (nproc)", sh("nproc").strip()),
        ("memory", f"{int(mem) / 1024 / 1024:.1f} GiB"),
        ("kernel", sh("uname -r").strip()),
        ("OS", version("grep PRETTY_NAME /etc/os-release | cut -d'\"' -f2")),
        ("kiln", version([KILN, "--version"]) + " @ " + version(["git", "-C", REPO, "rev-parse", "--short=12", "HEAD"])),
        ("g++", version(["g++", "--version"])),
        ("gnat", version(["gnatls", "--version"])),
        ("ninja", version(["ninja", "--version"])),
        ("make", version(["make", "--version"])),
        ("skopeo", version(["skopeo", "--version"])),
        ("registry", version(["docker-registry", "--version"])),
        ("podman", version(["podman", "--version"])),
        ("hyperfine", version(["hyperfine", "--version"])),
    ]


def report(args, started, load_start, load_end):
    md = []
    md.append("# kiln benchmarks\n")
    md.append("Written by `scripts/bench` (do not edit by hand; rerun it). Every figure is "
              "measured against its anchor in the same run and reported as a ratio. Timed tests "
              "never carry speed goals; this file does.\n")
    md.append(f"Run: {started} ({'quick smoke run' if args.quick else 'full run'}), "
              f"{time.time() - W.t0:.0f} s in all.\n")
    md.append("Load when it started: `" + load_start + "`  \nLoad when it ended: `" + load_end +
              "`\n\nOther processes running at the same time (the load average above 0 on an "
              "idle machine) slow down whatever runs while they do; the anchors suffer the same "
              "noise, but not necessarily at the same moment.\n")
    md.append("## Machine\n")
    md.append("| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in machine()) + "\n")
    md.append("## Results\n")
    md.append(R.table() + "\n")
    md.append("## Method and details\n")
    md.append(METHOD_COMMON)
    md.append("### 0. Toolchain roots\n" + METHOD_TOOLCHAIN)
    if "cold" in W.details:
        md.append("### 1. Cold build vs make and ninja running the same commands\n")
        md.append(METHOD_COLD)
        md.append("\n".join(W.details["cold"]) + "\n")
    md.append("### 2. No-op build\n" + METHOD_NOOP)
    md.append("### 3. Warm cache after `kiln clean`\n" + METHOD_WARM)
    if getattr(W, "mem_rows", None) or W.record_mem:
        md.append("### 4. Peak memory of kiln itself\n" + METHOD_MEM)
        md.append("| run | kiln's own VmHWM | largest process in the tree (wait4 ru_maxrss = `time -v`) |\n|---|---|---|")
        for what, own, tree in getattr(W, "mem_rows", []):
            md.append(f"| {what} | {'-' if own is None else f'{own / 1024:.1f} MiB'} | {tree / 1024:.1f} MiB |")
        for name, (own, tree) in W.record_mem.items():
            md.append(f"| cold `--no-images` build, {name} (recording run) | {own / 1024:.1f} MiB | {tree / 1024:.1f} MiB |")
        if getattr(W, "verify_mem", None):
            md.append(f"| `kiln verify`, 16 services (includes a cold build with images in-process) | {W.verify_mem / 1024:.1f} MiB | - |")
        if getattr(W, "bigpush", None):
            md.append(f"| push of a 1 GiB layer (`push_bench`) | {W.bigpush[2] / 1024:.1f} MiB | {W.bigpush[3] / 1024:.1f} MiB |")
        md.append("")
    if getattr(W, "image_sizes", None):
        md.append("### 5. Images\n" + METHOD_IMAGES)
        md.append("| service | compressed | budget | fraction |\n|---|---|---|---|")
        for n, c, b in W.image_sizes:
            md.append(f"| {n} | {mb(c)} | {mb(b)} | {c / b:.3f} |")
        md.append("")
        n_slim, slim_gz = W.slim
        md.append(f"debian:12-slim style base estimated from this machine's dpkg database: "
                  f"{n_slim} packages, {mb(slim_gz)} as one tar.gz (-6).\n")
        md.append("| image | kiln layers | floor: one tar.gz | floor: files gzipped one by one | "
                  "runtime packages (status.d) | extra packages on slim | their tar.gz | "
                  "service layer | anchor: slim + packages + service layer |\n"
                  "|---|---|---|---|---|---|---|---|---|")
        for svc, layers, one, each, rt, extra, extra_gz, top, anchor in W.floor_rows:
            md.append(f"| {svc} | {mb(layers)} | {mb(one)} ({layers / one:.3f}×) | {mb(each)} "
                      f"({layers / each:.3f}×) | {', '.join(rt) or '-'} | "
                      f"{', '.join(extra) or 'none'} | {mb(extra_gz)} | {mb(top)} | {mb(anchor)} |")
        md.append("")
    if getattr(W, "reassemble", None):
        md.append("### 6. Reassembly after one edit\n" + METHOD_REASSEMBLE)
        for what, dt, touched, changed, ran in W.reassemble:
            md.append(f"- {what}: `kiln build -j2` took {fmt_s(dt)}, ran {ran} action(s); "
                      f"changed layers: " + (", ".join(f"{s} {changed[s]}" for s in touched) or "none")
                      + f"; the other {16 - len(touched)} layouts kept every layer digest.")
        md.append("")
    if getattr(W, "layer", None):
        size, files, k, a, j, gz = W.layer
        md.append("### 7. Layer writing throughput\n" + METHOD_LAYER)
        md.append(f"- tree: {size / 1e6:.0f} MB in {files} files; kiln's layer {mb(j['compressed_size'])} "
                  f"compressed, `gzip -6` {mb(gz)}.\n- kiln's phases in one run: digesting the files "
                  f"{j['digest_ms'] / 1000:.2f} s, writing the layer {j['write_ms'] / 1000:.2f} s "
                  f"({size / (j['write_ms'] / 1000) / 1e6:.0f} MB/s for the write alone).\n")
    if getattr(W, "push", None) or getattr(W, "bigpush", None):
        md.append("### 8. Push\n" + METHOD_PUSH)
    if getattr(W, "push", None):
        kt, nt, st, rt, noop, rnt = W.push
        md.append(f"- kiln push runs: {', '.join(fmt_s(t) for t in kt)}; `--no-attach`: "
                  f"{', '.join(fmt_s(t) for t in nt)}; skopeo totals: {', '.join(fmt_s(t) for t in st)}.")
        md.append(f"- re-push runs: {', '.join(fmt_s(t) for t in rt)}; `--no-attach`: "
                  f"{', '.join(fmt_s(t) for t in rnt)}; no-op `kiln build` alone: {fmt_hf(noop)}.")
        fmt_req = lambda c: ", ".join(f"{n} {m}" for m, n in sorted(c.items())) or "none"
        md.append(f"- requests the registry saw during one re-push (its access log): "
                  f"{fmt_req(W.repush_requests)}; with `--no-attach`: "
                  f"{fmt_req(W.repush_na_requests)}.\n")
    if getattr(W, "bigpush", None):
        size, dt, own, tree = W.bigpush
        md.append(f"- 1 GiB layer ({size / 2**30:.2f} GiB blob): pushed in {fmt_s(dt)}, "
                  f"peak RSS {own / 1024:.1f} MiB.\n")
    md.append("### 9. `scripts/demo` from a warm cache\n" + METHOD_DEMO)
    if getattr(W, "demo", None):
        md.append("- runs: " + ", ".join(fmt_s(t) for t in W.demo) + "\n")
    if getattr(W, "demo_failure", None):
        md.append("The demo failed:\n\n```\n" + W.demo_failure + "\n```\n")
    md.append("### 10. SBOM and status.d cost\n" + METHOD_SBOM)
    md.append("### 11. `kiln verify`\n" + METHOD_VERIFY)
    md.append("### 12. The cache: verified restores and garbage collection\n" + METHOD_CACHE)
    if "remote" in W.details or "remote-exec" in W.details:
        md.append("### 13. The remote cache and remote execution\n" + METHOD_REMOTE +
                  W.details.get("remote", "") + W.details.get("remote-exec", ""))
    if "multiarch" in W.details:
        md.append("### 14. Two platforms\n" + METHOD_MULTIARCH + W.details["multiarch"])
    if W.notes:
        md.append("## Not measured in this run\n\n" + "\n".join(f"- {n}" for n in W.notes) + "\n")
    md.append(ANALYSIS)
    return "\n".join(md)


ANALYSIS = ""  # replaced by scripts/bench's caller text when present (see bench/analysis.md)


class State:
    pass


W = State()
R = Results()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: fewer repetitions; writes the report to "
                         "$TMPDIR/kiln-BENCHMARKS.quick.md instead of BENCHMARKS.md")
    ap.add_argument("--only", default=",".join(STEPS),
                    help=f"comma-separated subset of: {','.join(STEPS)}")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--fixtures-only", action="store_true",
                    help="steps 1-3 on fixtures/engine only (for working on the bench itself)")
    ap.add_argument("--out", help="where to write the report (default: BENCHMARKS.md, or the "
                                  "temp dir with --quick)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    bad = only - set(STEPS)
    if bad:
        ap.error(f"unknown steps {sorted(bad)}")

    W.t0 = time.time()
    W.tmp = tempfile.mkdtemp(prefix="kiln-bench.")
    W.notes = []
    probes.EXPORT_DIR = W.tmp
    W.cold, W.noop, W.warm, W.replay, W.record_mem, W.details = {}, {}, {}, {}, {}, {}
    W.image_phase = {}
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = uptime()
    log(f"temp dir {W.tmp}; {load_start}")
    q = args.quick
    try:
        root = copy_workspace()
        ws = Workspace("ws", root, os.path.join(W.tmp, "cache-ws"))
        engine = Workspace("engine", os.path.join(root, "fixtures/engine"),
                           os.path.join(W.tmp, "cache-engine"))
        def step(name, fn, *a):
            """Runs one step; a failure is reported in BENCHMARKS.md and the run goes on."""
            if name not in only:
                return
            try:
                fn(*a)
            except (Exception, SystemExit) as e:
                log(f"{name} failed: {e!r}")
                W.notes.append(f"step `{name}` failed in this run: {e!r}")

        if not args.fixtures_only:
            step("toolchain", toolchain, ws, 1 if q else 3)
        for w in (engine,) if args.fixtures_only else (engine, ws):
            step("cold", cold, w, 1 if q else (5 if w.name == "engine" else 2))
            step("noop", noop, w, 10 if q else 30)
            step("warm", warm, w, 2 if q else 5)
        if not args.fixtures_only:
            log("memory, images, reassembly, layer, push, demo, verify")
            step("memory", memory, ws, engine)
            step("images", images, ws, engine)
            step("reassemble", reassemble, ws)
            step("layer", layer, 1 if q else 3)
            step("push", push, ws, 1 if q else 2)
            step("bigpush", bigpush)
            step("demo", demo, ws, 1 if q else 2)
            step("sbom", sbom)
            step("verify", verify, ws)
            step("cache", cache, ws, 2 if q else 5)
            step("remote", remote, ws, 2 if q else 5)
            step("remote", remote_exec, ws, 1 if q else 2)
            step("multiarch", multiarch, ws, 1 if q else 2)
        memory_row()
        skipped = [s for s in STEPS if s not in only]
        if skipped:
            W.notes.append("steps left out with --only: " + ", ".join(skipped))
        load_end = uptime()
        global ANALYSIS
        analysis = os.path.join(BENCH, "analysis.md")
        if os.path.exists(analysis) and not q:
            ANALYSIS = open(analysis).read()
        text = report(args, started, load_start, load_end)
        dest = args.out or (os.path.join(tempfile.gettempdir(), "kiln-BENCHMARKS.quick.md") if q
                            else os.path.join(REPO, "BENCHMARKS.md"))
        with open(dest, "w") as f:
            f.write(text)
        print(R.table())
        log(f"report written to {dest} ({time.time() - W.t0:.0f} s)")
    finally:
        for p in registry.STARTED:
            if p.poll() is None:
                p.terminate()
                p.wait()
        if args.keep:
            log(f"kept {W.tmp}")
        else:
            shutil.rmtree(W.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

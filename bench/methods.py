"""How each measurement is made, as written into BENCHMARKS.md."""

METHOD_COMMON = """All builds use `-j2` (the machine has 2 cores) on a copy of the repository's
workspace (`recipes/`, `toolchains/`, `fixtures/`, `scripts/`, as in the working tree) in a
temporary directory with its own git commit, and a private `KILN_CACHE`; `fixtures/engine` (2
services, 2 libraries) and the 16-service workspace are measured separately. Timings are
hyperfine means ± standard deviation unless a single run is named.
"""

METHOD_TOOLCHAIN = """The 16 services build on kiln's built-in Debian toolchains (g++ 12 with wxBase,
GNAT 12), pinned in kiln.lock. `kiln toolchain fetch` pins and materialises their roots: once
into an empty store from the Debian archive (information: the mirror's speed decides), then
(hyperfine, prepare: a store holding only those .debs, hardlinked; the mirror unreachable) from
cached .debs, against `dpkg-deb -x` unpacking the same .debs into one directory; then again with
the roots in place, which must cost only a look-up.
"""

METHOD_COLD = """The 16 services' workspace uses Debian toolchains, so kiln runs every command in
bubblewrap over the toolchain root; it is recorded once on the host's compilers with the same
flags (the fixtures' `source = "host"` toolchain files), and ninja and make replay those commands
on the host: the sandbox's cost is in the ratio. kiln is first run once with `g++`, `gcc`, `ar` and `gnatbind` shims first on
`PATH` (`bench/record-tool`): they log the working directory and arguments of every command that
works in a kiln staging directory and exec the real tool. `bench/replay.py` turns that log plus
`out/.kiln/state.json` into a `build.ninja` and a `Makefile` (generated in the temp dir): the
same commands in the same directories with the same arguments, each wrapped the way kiln's
executor wraps it (empty staging directory, `mkdir -p` of the output directories, the command,
`mv` of the outputs into `out/`, remove the staging directory), with edges from arguments that
name another command's output and the dependencies kiln discovered as implicit inputs. Each
timed run starts from no `out/` and, for kiln, an empty cache (so kiln also probes its
toolchains and stores every output in its cache, which make and ninja do not). The anchors do
compile+link only, so the target compares `kiln build --no-images`; the full `kiln build` with
images is reported beside them, and so is a cold `--no-images` build whose cache is empty
except for the memoised toolchain probes (what any earlier kiln run on the machine leaves).
"""

METHOD_NOOP = """After a complete build, `hyperfine -N --warmup 3` runs `kiln build -j2` (with
the image up-to-date checks), `kiln build -j2 --no-images` and `ninja -j2` on the replayed graph
(which stats the same sources and discovered headers). Targets: 20 ms for fixtures/engine, 50 ms
for the 16 services, for the full `kiln build`.
"""

METHOD_WARM = """hyperfine with `kiln clean` (removes `out/`, keeps the cache) as the prepare
step before every run; the ratio is the cold build of section 1 (same flags, empty cache) over
this. Every action is restored from the action cache, and image layers from the layer cache.
"""

METHOD_MEM = """`/usr/bin/time -v` reports `ru_maxrss` of the process it waited for, and Linux
folds into that the peak of every descendant the process itself waited for (the kernel keeps
`max(own maxrss, children's maxrss)` when a child is reaped, and `wait4` returns that for the
whole subtree). So for a build that runs compilers it prints the largest compiler's RSS
(cc1plus, gnat1), not kiln's. kiln's own figure is therefore its `VmHWM` (the kernel's per-process
peak RSS) read from `/proc/PID/status` every 5 ms while it runs (`bench/probes.py: peak_rss`),
with `/usr/bin/time` around it for the tree figure. Both are shown; where kiln spawns no big
children (no-op, warm), the two agree.
"""

METHOD_IMAGES = """Compressed size = sum of the manifest's layer sizes. Budgets come from the
recipes. For the fixture images, the layers are extracted into one tree and compared with two
floors computed from that tree: all of it as one `tar --sort=name | gzip -6`, and every regular
file gzipped (-6) on its own. The debian:12-slim style anchor cannot be pulled (loopback
network only), so it is estimated on this machine: the packages `debootstrap --variant=minbase`
installs (Priority required, plus apt, plus their Depends/Pre-Depends closure, resolved against
the installed dpkg database), their installed files minus what the slim variant removes
(`/usr/share/{doc,man,info,locale,groff,lintian,linda}`), plus their `/var/lib/dpkg/info`
files, as one tar.gz at -6. Then the service's runtime packages (the `status.d` records in
kiln's image) with their dependency closure minus the slim set, as apt would add them, and
finally kiln's own service layer (the stripped binary). Installed files are what debootstrap
would unpack, so the estimate should be close; the real image also has /var/lib/apt data and
config files not owned by a package, so it is if anything a slight underestimate of the anchor.
"""

METHOD_REASSEMBLE = """With all 16 images built, a line defining an exported `used` symbol is
appended to one file, `kiln build -j2` is timed once, every layout's layer digests are compared
with before, and the file is restored (then rebuilt from the cache).
"""

METHOD_LAYER = """A deterministic 200 MB tree (half text-like lines, half random bytes, files of
4 KiB to 16 MiB) is generated in a temp dir. kiln: `examples/layer_bench.rs` digests every file
(the layer cache key needs content digests) and calls `LayerCache::get_or_write` into an empty
cache dir, which tars, hashes the tar (diff_id), gzips at level 6 (miniz_oxide), hashes the gzip
(digest), writes and fsyncs the blob: one thread. Anchor: `tar --sort=name ... | gzip -6 |
sha256sum`, three processes in a pipeline (so up to three cores' worth of work on two cores), one
hash, nothing written. The file contents are in the page cache for both (one warm-up run each).
"""

METHOD_PUSH = """Each push goes to a fresh `docker-registry serve` on a free loopback port with
temporary storage. kiln: `kiln push --to 127.0.0.1:PORT/bench --jobs 4` (it first runs its
up-to-date build check, pushes the images with two tags each, then attaches SPDX, CycloneDX and
provenance as referrers); also with `--no-attach`. Anchor: `skopeo copy --dest-tls-verify=false
oci:out/images/<svc>:<version> docker://127.0.0.1:PORT2/anchor/<svc>:<version>` for the 16
services one after another into another fresh registry. Re-push: `kiln push` again to the same
registry; its network part is estimated as the total minus the no-op `kiln build` of section 2.
The 1 GiB layer: a layout with one layer (a tar of 1 GiB of seeded random bytes in stored gzip
blocks) pushed by `examples/push_bench.rs` through `kiln::registry::push_all`, its VmHWM sampled
as in section 4.
"""

METHOD_DEMO = """`scripts/demo` copied with the workspace and run there with `KILN` set to the
built binary (so it skips `cargo build`), the bench's warm cache and `JOBS=2`: build (all cached),
start a registry, push, `podman pull` and run all 16, check health, readiness and SIGTERM. The
first run may still pull into podman's store; a repeat shows the fully warm figure. It uses the
services' fixed ports with `--network=host`, so it fails if something else holds them.
"""

METHOD_SBOM = """`kiln build --json` reports one duration per target, covering build actions only,
and has no switch to skip SBOMs, so SBOM and status.d generation cannot be separated from image
assembly without changing kiln. The table gives the whole image phase instead: `kiln build` run
once right after a cold `--no-images` build (binaries in place, no layer cached yet), an upper
bound for the SBOM and status.d share.
"""

METHOD_VERIFY = """`kiln verify -j2` of all 16 services once (the workspace is already built, so
its own build is a no-op; it then copies the tracked files, builds them cold with an empty cache
and compares every blob), against the cold `kiln build -j2` with images of section 1.
"""

METHOD_CACHE = """Verified restores: with the 16 services built and the cache warm, hyperfine (prepare
`kiln clean`) times `kiln build -j2` twice: the kiln under test, which hashes every blob, action
output and layer it reads back from the cache, and the same source built with the
`bench-unverified` feature (`target/bench-unverified`), which compiles that hashing out and is
built only as this anchor. Target: ≤ 1.1×. Garbage collection: the workspace's real cache is
padded with random CAS blobs (log-uniform 4 KiB to 2 MiB, mtimes spread over 30 days) to 1 GB;
each run starts from a hard-linked copy of it and `kiln cache gc --max-size 500MB --grace 0s`
brings it under 500 MB (checked after the timed runs); `du -sb` of the same tree, a plain walk
with one stat per file, is the anchor.
"""

METHOD_REMOTE = """The remote cache against a real BuildGrid (`bgd server start`, in-memory CAS and
action cache on a loopback port). A copy of the workspace builds the 16 services cold with
`--remote-cache`, empty local cache, storing every action on the server. A second copy at another
path then builds with an empty local cache and no out/ each run (hyperfine prepare), with images:
every action is served by the remote cache, the images are assembled locally. The anchor is the
same second checkout, no out/, built from the first copy's warm local cache without the remote.
Target ≤ 3 s. One more build from the remote is reported: actions run and blobs sent to the
CAS (`blobs_uploaded` of `--json`: outputs, layers, .debs; target 0 and 0: the blobs of a hit are
downloaded, never uploaded).
Remote execution: another copy of the workspace builds the 16 services cold with images and
`--remote-exec -j8` (eight actions in flight for two workers, as a REAPI client keeps more in
flight than the workers' slots, so that uploads, queueing and downloads overlap with execution;
`KILN_BENCH_REMOTE_JOBS` changes it; at -j2 every Execute round trip is exposed), empty local
cache and no out/ before each run, against BuildGrid with its SQL scheduler on a throw-away
PostgreSQL (initdb, loopback port, fsync off), execution and bots services and an in-memory CAS
and action cache, its scheduler polling every 50 ms (its default is once a second, a second on
every action) and its job assigner sweeping every 50 ms with a 0.1 s back-off for a job no bot
is free for (its defaults: up to a second of jitter after an empty sweep, 5 s of back-off), and
two `kiln worker` processes on this machine (the set-up of tests/remote_exec.rs). Every run gets a new PostgreSQL, BuildGrid and workers
(workers with an empty cache of their own, sharing the machine's Debian store as local builds
do), started untimed and waited for until the scheduler lists both bots, so nothing is served
from an earlier run's action cache. The anchor is the same cold build run locally with `-j2`,
alternating with the remote one in the same run. A run counts only if `--json` reports no remote
error, its `actions_remote_exec` equal the actions with `source: "remote-exec"`, are more than
none, and the workers' logs show at least as many leases. Target ≤ 1.15×; both machines' two
cores are the same two cores here, so this measures the protocol's overhead, not a speed-up.
Reported with it: the mean time of one action (`duration_ms` over actions) remote and local, and
the CPU seconds of the client, BuildGrid, PostgreSQL and each worker during the remote build
(their process groups; the sandboxed commands themselves are not visible to getrusage).
"""

METHOD_MULTIARCH = """Two copies of the 16-service workspace: one as it is (linux/amd64 alone), one with
`platforms = ["linux/amd64", "linux/arm64"]` in kiln.toml. `kiln toolchain fetch` pins and
materialises every root of each first, untimed (the arm64 one is Debian's amd64 cross g++ and
GNAT with the arm64 runtime packages). Then both build cold with images, out/ and the cache wiped
before every run (hyperfine prepare), SOURCE_DATE_EPOCH=0: the target is ≤ 2.1× the amd64-only
build, since the cross compilers run at native speed. The no-op of both platforms (3 warm-up
runs) has its anchor in the amd64-only no-op; target ≤ 60 ms. Image size: each service's arm64
image (config plus compressed layers, as pushed) against its amd64 sibling; the row shows the one
furthest from 1, target within 10%.
"""

"""The sandbox: untrusted detectors run in a separate process that can reach nothing it should not, and say
nothing but their answers.

Isolation is bubblewrap (Linux namespaces): no network (a private network namespace), a private PID namespace, and a
root filesystem of an allowlist (`allowlist`): the system's libraries, two files of /etc, Python and the project's
packages read-only, the detector's own code, at the white-box tier the organisms' directory read-only, and one
writable scratch directory. The detector runs as an unprivileged user (`SANDBOX_UID`) in a user namespace of its
own, with an empty environment of its own. Every organism gets a process of its own, forked from a warm zygote that
never ran the detector's code and isolated in fresh namespaces and file systems, where of the organisms only its own
are left (`benchmark.zygote`); so what a detector saw of one organism is gone when it judges the next (as in TrojAI,
where each model is judged in a fresh container). The answer key and the catalog's secret, the results database, the
rest of the catalog cache, the homes and the host's /etc are never mounted. Resources are limited with cgroups
(processes, memory) and per-organism budgets of wall time and CPU time that the parent enforces, killing the whole
sandbox when one is exceeded.

A black-box detector gets no organism files at all: its handles send every query to the parent, which
answers from the model outside the sandbox, only for the organism being asked about (or dev organisms
while fitting), and counts the queries itself against the budget.

What leaves a sandbox is checked by the parent before it is kept: finite scores of the right shape, proposed
inputs that are inputs of the organism's world, a goal of the taxonomy, a name that is a short label, and
failures in the harness's own words (`executors.failure_words`), never the detector's text. Times and query
counts are the parent's own.

Where bubblewrap or the cgroup controllers are missing, `sandbox_unavailable` says why, and sealed-split
runs are refused rather than run unprotected.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from benchmark.api import DEFAULT_WORLDS, AccessTier, BadInput, Maze, Track, World
from benchmark.executors import DevOrganism, Executor, check_elicitation, check_probability, check_scores, failure_words
from benchmark.handles import LocalPolicy, local_model, organism_world
from benchmark.limits import Limits
from benchmark.records import DetectorInfo, Prediction
from benchmark.registry import CONTRACT, NAME, BrokenContract, DetectorSource, UnknownDetector
from benchmark.sandbox_worker import FITTED, given
from model_organisms.catalog import Catalog

CGROUP_ROOT = Path("/sys/fs/cgroup")
SANDBOX_UID = 65534
"""The unprivileged user a sandboxed detector runs as (``nobody``): it owns its scratch directory and nothing else."""
INSIDE_UID = 1000
"""Its uid inside its own user namespace."""
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/sbin")
"""The system's programs and libraries, read-only (on merged-/usr systems all but /usr are links into it)."""
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")
"""All a sandbox sees of /etc: the dynamic linker's cache and the time zone (Python and torch read no other)."""
CONTROLLERS = ("pids", "memory", "cpuacct")
PROJECT_PACKAGES = ("benchmark", "model_organisms", "detectors", "leaderboard")
MAX_QUERY_PROMPTS = 4096
MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS = 64
MAX_DIRECTION_VALUES = MAX_QUERY_PROMPTS * 1024
MAX_LINE_BYTES = 256 << 20
"""Longest message a sandboxed process may send (a white-box query of many directions is the largest)."""
INTERNALS = ("activations", "gradients")
"""What a white-box monitor asks the parent for (the organism's files are not in its sandbox)."""


STARTUP_SECONDS = 30.0
"""Wall and CPU time granted to a sandbox's start-up on top of its budget: the worker imports torch and
transformers (several CPU seconds on a slow machine) before the detector runs, and that is not its work."""


class SandboxError(Exception):
    pass


def sandbox_unavailable() -> str | None:
    """Why the sandbox cannot run here, or None when it can."""
    for tool, package in (("bwrap", "bubblewrap"), ("setpriv", "util-linux")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install {package})"
    for controller in CONTROLLERS:
        base = CGROUP_ROOT / controller
        try:
            probe_dir = base / f"dab-probe-{uuid.uuid4().hex[:8]}"
            probe_dir.mkdir()
            probe_dir.rmdir()
        except OSError as e:
            return f"cannot create a {controller} cgroup under {base} ({e.strerror}); run as root on cgroup v1"
    return _isolation_probe()


@functools.cache
def _isolation_probe() -> str | None:
    """Why bubblewrap cannot build the sandbox here or a zygote cannot isolate a fork in it (once a process)."""
    scratch = make_scratch()
    try:
        probe = launch(scratch, [], [sys.executable, "-m", "benchmark.zygote"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
        _, stderr = probe.communicate()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if probe.returncode != 0:
        return f"bubblewrap cannot build the sandbox here, or isolate a process in it: {stderr.strip()[-300:]}"
    return None


class _Cgroup:
    """One cgroup per sandbox in each controller (cgroup v1 layout)."""

    def __init__(self, limits: Limits) -> None:
        name = f"dab-{uuid.uuid4().hex[:12]}"
        self.dirs = {c: CGROUP_ROOT / c / name for c in CONTROLLERS}
        for d in self.dirs.values():
            d.mkdir()
        (self.dirs["pids"] / "pids.max").write_text(str(limits.processes))
        memory = str(limits.memory_mb * 2**20)
        (self.dirs["memory"] / "memory.limit_in_bytes").write_text(memory)
        swap_limit = self.dirs["memory"] / "memory.memsw.limit_in_bytes"
        if swap_limit.exists():
            swap_limit.write_text(memory)

    def enter(self) -> None:
        """Called in the child before exec: everything it starts stays inside."""
        for d in self.dirs.values():
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def cpu_seconds(self) -> float:
        return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9

    def hit_memory_limit(self) -> bool:
        memory = self.dirs["memory"]
        counters = [memory / "memory.failcnt", memory / "memory.memsw.failcnt"]
        if any(int(c.read_text()) > 0 for c in counters if c.exists()):
            return True
        oom = dict(line.split() for line in (memory / "memory.oom_control").read_text().splitlines())
        return int(oom.get("oom_kill", 0)) > 0

    def hit_process_limit(self) -> bool:
        events = (self.dirs["pids"] / "pids.events").read_text()
        return any(line.split()[1] != "0" for line in events.splitlines() if line.startswith("max"))

    def kill_all(self) -> None:
        for _ in range(50):
            pids = [int(p) for p in (self.dirs["pids"] / "cgroup.procs").read_text().split()]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs.values():
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


def _python_roots() -> list[Path]:
    """What the interpreter needs: its installation, the venv, and the project's packages."""
    roots = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parent.parent}
    for package in PROJECT_PACKAGES:
        module = sys.modules.get(package) or __import__(package)
        roots.update(Path(p) for p in module.__path__)
    return sorted(r for r in roots if r.exists())


def allowlist(scratch: Path, readable: Sequence[Path]) -> list[tuple[Path, bool]]:
    """Every path mounted into a sandbox, with whether it is writable: the system's libraries, `ETC_FILES`,
    Python and the project's packages, `readable` (the detector's code, an organism's files) read-only, and the
    scratch directory. A path inside another is left out, since the outer one shows it."""
    system = [Path(p) for p in SYSTEM_DIRS if os.path.isdir(p) and not os.path.islink(p)]
    paths = [*system, *(Path(p) for p in ETC_FILES if os.path.isfile(p)), *_python_roots(), *map(Path, readable)]
    kept = [p for p in dict.fromkeys(paths) if not any(o != p and o in p.parents for o in paths)]
    return [(p, False) for p in kept] + [(scratch, True)]


def bwrap_command(scratch: Path, readable: Sequence[Path], argv: Sequence[str], threads: int) -> list[str]:
    """Two bubblewraps. The outer one runs as root, so it can mount what `allowlist` names wherever it lives
    (under /root, say), and gives the sandbox its own network (none), process, IPC and host-name namespaces. It
    then drops to `SANDBOX_UID` with no capabilities left (`setpriv`), and the inner one puts that user in a user
    namespace of its own as `INSIDE_UID`, the whole tree read-only but for an empty /tmp, the scratch directory
    and its own /proc (where a fork of the zygote writes its id maps to enter namespaces of its own)."""
    mounts = allowlist(scratch, readable)
    outer = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session", "--clearenv", "--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--tmpfs", "/tmp"]
    for link in SYSTEM_DIRS:  # merged-/usr systems: /lib, /bin ... are links into /usr
        if os.path.islink(link):
            outer += ["--symlink", os.readlink(link), link]
    parents = {a for path, _ in mounts for a in path.parents} - {Path("/"), Path("/tmp")}
    for parent in sorted(parents, key=lambda a: len(a.parts)):
        outer += ["--perms", "0755", "--dir", str(parent)]  # where they lead, readable by the sandbox's user
    for path, writable in sorted(mounts, key=lambda m: len(m[0].parts)):
        outer += ["--bind" if writable else "--ro-bind", str(path), str(path)]
    env = {"HOME": str(scratch), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "USER": "sandbox", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(scratch / "hf"), "OMP_NUM_THREADS": str(threads),
           "MPLCONFIGDIR": str(scratch / "mpl"), "PYTHONDONTWRITEBYTECODE": "1"}
    for name, value in env.items():
        outer += ["--setenv", name, value]
    outer += ["--remount-ro", "/", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    drop = ["setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups", "--inh-caps=-all",
            "--no-new-privs", "--"]
    inner = ["bwrap", "--unshare-user", "--uid", str(INSIDE_UID), "--gid", str(INSIDE_UID),
             "--die-with-parent", "--ro-bind", "/", "/", "--bind", "/proc", "/proc", "--dev-bind", "/dev", "/dev",
             "--bind", "/tmp", "/tmp", "--bind", str(scratch), str(scratch), "--chdir", str(scratch), "--"]
    return [*outer, *drop, *inner, *argv]


def make_scratch() -> Path:
    """A fresh scratch directory, owned by the sandbox's user alone."""
    scratch = Path(tempfile.mkdtemp(prefix="dab-sandbox-"))
    os.chown(scratch, SANDBOX_UID, SANDBOX_UID)
    return scratch


def launch(scratch: Path, readable: Sequence[Path], argv: Sequence[str], threads: int = 1,
           cgroup: _Cgroup | None = None, **popen: object) -> subprocess.Popen:
    """Start `argv` in a sandbox; bubblewrap itself starts with an empty environment, so that nothing of this
    process's environment is anywhere inside."""
    return subprocess.Popen(bwrap_command(scratch, readable, argv, threads), env={"PATH": "/usr/bin:/bin"},
                            preexec_fn=cgroup.enter if cgroup else None, **popen)  # type: ignore[arg-type]


def _pop_line(buffer: bytearray) -> bytes:
    """The first line of `buffer`, taken out of it (without its newline)."""
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


@dataclasses.dataclass
class _Zygote:
    """A sandbox's zygote (`benchmark.zygote`): its bubblewrap, cgroup and scratch directory, and what it and its
    forks said that was not read yet."""

    proc: subprocess.Popen
    cgroup: _Cgroup
    scratch: Path
    out: bytearray = dataclasses.field(default_factory=bytearray)
    notices: bytearray = dataclasses.field(default_factory=bytearray)
    runs: int = 0

    def send(self, message: dict) -> None:
        assert self.proc.stdin
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
        except BrokenPipeError:
            pass

    def notice(self, timeout: float) -> dict | None:
        """The zygote's next word on its own channel (the process it forked ended, or it is ready), or None."""
        assert self.proc.stderr
        deadline = time.monotonic() + timeout
        while b"\n" not in self.notices:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stderr], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stderr.fileno(), 1 << 16)
            if not chunk:
                return None
            self.notices += chunk
        line = _pop_line(self.notices)
        try:
            return json.loads(line)
        except ValueError:  # the zygote's own traceback: it died
            return {"zygote_failed": line.decode(errors="replace")}

    def line(self, timeout: float) -> bytes | None:
        """The forked process's next line; b"" when it has ended, None when none came within `timeout`."""
        assert self.proc.stdout and self.proc.stderr
        while b"\n" not in self.out:
            if len(self.out) > MAX_LINE_BYTES:
                return b"not a line"
            ready, _, _ = select.select([self.proc.stdout, self.proc.stderr], [], [], timeout)
            if not ready:
                return None
            if self.proc.stderr in ready:  # the zygote says its fork ended (or the zygote itself did)
                return b""
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                return b""
            self.out += chunk
        return _pop_line(self.out)

    def drain(self) -> None:
        """Throw away whatever an ended fork wrote and nobody read, so that it never passes for the next one's."""
        assert self.proc.stdout
        while select.select([self.proc.stdout], [], [], 0)[0] and os.read(self.proc.stdout.fileno(), 1 << 16):
            pass
        self.out.clear()

    def __post_init__(self) -> None:
        _LIVE[id(self)] = self

    def kill(self) -> None:
        self.cgroup.remove()
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)
        _LIVE.pop(id(self), None)


_LIVE: dict[int, _Zygote] = {}
"""Every zygote not killed yet, at rest or in use: at exit each goes, with its cgroup and scratch directory, even
one whose executor was never closed."""
atexit.register(lambda: [z.kill() for z in list(_LIVE.values())])
_AT_REST: dict[tuple, _Zygote] = {}
"""Zygotes between evaluations, one per detector, catalog, tier and limits: the next evaluation of that detector
starts warm. A zygote never runs a detector's code, so nothing passes through it from one to the next."""
MAX_AT_REST = 2
"""Zygotes kept at rest (a white-box one holds torch: hundreds of MB); the oldest goes first."""


def release() -> None:
    """Kill the zygotes at rest now, with their cgroups and scratch directories (a Ray task does before it ends: Ray
    kills its workers with SIGKILL, when nothing at exit runs)."""
    while _AT_REST:
        _AT_REST.popitem()[1].kill()


class Sandboxed(Executor):
    """Executor that runs a submitted detector in the sandbox, one JSON message per line.

    Each organism is judged in a process of its own, forked for it from a warm zygote and thrown away after
    (`benchmark.zygote`). It starts from the zygote's imports, in namespaces of its own, with a fresh scratch
    directory, at the white-box tier the files of that organism alone, and the fitted detector, carried over as
    a pickle that only sandboxed processes open. So nothing a detector learns from one organism reaches its
    judgement of another: it cannot compare a split's organisms, which would tell a deceptive organism and its
    twin (one initialisation, one data order) from decoys without looking for any goal. `fit` runs once, in a
    process that holds the dev organisms, and so does each leave-one-family-out refit; an organism's process
    then audits it as the fit and every refit left the detector, one request each. When a process breaks a limit,
    the parent kills the whole sandbox (its cgroup) and records what happened; the next organism gets a new
    zygote.
    """

    def __init__(self, source: DetectorSource, catalog: Catalog, limits: Limits = Limits(), threads: int = 1,
                 query_budget: int | None = None) -> None:
        reason = sandbox_unavailable()
        if reason:
            raise SandboxError(f"the sandbox is unavailable, so sealed splits are refused: {reason}")
        self.source, self.catalog, self.limits, self.threads = source, catalog, limits, threads
        self.query_budget = query_budget
        self._z: _Zygote | None = None
        self._run: Path | None = None
        self._white_box = False  # until the detector says so, no organism file is mounted
        self._fitted: bytes | None = None
        self._refitted: dict[str, bytes | None] = {}
        self._left_out: dict[str, list[Prediction]] = {}
        self._served = 0
        try:
            hello = self._start([])
        finally:
            self._end_run()
            self._park()  # as a black-box zygote: a white-box detector's mounts the organisms, imports the model code
        problems = hello.get("contract")
        if isinstance(problems, list) and problems and set(problems) <= set(CONTRACT):
            raise BrokenContract(source.target, problems)
        if "error" in hello:
            raise UnknownDetector(hello["error"])  # the harness's words: `_call` refuses any other
        if not (isinstance(hello.get("name"), str) and NAME.fullmatch(hello["name"])
                and hello.get("tier") in set(AccessTier)):
            raise UnknownDetector("the sandboxed detector sent a malformed greeting")
        # The hash is taken here from the files, never from the sandboxed code, which could lie about it.
        self.info = DetectorInfo(name=hello["name"], source_sha256=source.sha256(), tier=hello["tier"])
        self.tracks = frozenset(Track(t) for t in hello.get("tracks", []) if t in set(Track))
        self.fits = hello.get("fits") is True
        self.worlds = frozenset(w for w in hello.get("worlds", DEFAULT_WORLDS) if w in ("assistant", "maze"))
        self._white_box = hello["tier"] == AccessTier.WHITE_BOX.value
        if self._white_box:
            self.query_budget = None

    def __getstate__(self) -> dict:
        """What travels to another machine (`benchmark.on_cluster`): all but this machine's processes."""
        return {**vars(self), "_z": None, "_run": None}

    def _key(self) -> tuple:
        return (self.source, str(self.catalog.directory), self.catalog.fingerprint, self._white_box, self.limits,
                self.threads)

    def _launch(self) -> dict | None:
        """Take this detector's zygote at rest, or start one (the organisms' directory mounted at white box); an
        error if it is not ready within the start-up allowance."""
        if (found := _AT_REST.pop(self._key(), None)) is not None:
            self._z = found
            return None
        organisms = self.catalog.directory / "organisms"
        scratch, cgroup = make_scratch(), _Cgroup(self.limits)
        self._z = _Zygote(launch(scratch, [*([organisms] if self._white_box else []), *self.source.paths()],
                                 [sys.executable, "-m", "benchmark.sandbox_worker"], self.threads, cgroup,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0),
                          cgroup, scratch)
        self._z.send({"source": dataclasses.asdict(self.source), "spec_fingerprint": self.catalog.spec_fingerprint,
                      "world": self.catalog.manifest.world, "worlds": self.catalog.manifest.worlds,
                      "maze_sizes": list(self.catalog.maze_world().sizes),
                      "ref": list(self.catalog.lm_world().ref_shape),
                      "organisms": str(organisms) if self._white_box else None})
        if self._z.notice(STARTUP_SECONDS * 2) != {"ready": True}:
            return self._kill("the sandbox did not start")
        return None

    def _start(self, organism_ids: Sequence[str], fits: Sequence[bytes | None] = (), mount: bool = True) -> dict:
        """A fresh process holding these organisms' files (white box only, unless not `mount`ed: on the monitor
        track the parent serves their activations) and the pickles of these fitted detectors (`given`); returns its
        greeting."""
        if self._z is None and (failed := self._launch()):
            return failed
        assert self._z
        self._z.runs += 1
        self._run = self._z.scratch / f"run-{self._z.runs}"
        self._run.mkdir()
        os.chown(self._run, SANDBOX_UID, SANDBOX_UID)
        for i, pickled in enumerate(fits):
            if pickled is not None:
                (self._run / given(i)).write_bytes(pickled)
        self._z.send({"judged": list(organism_ids), "keep": list(organism_ids) if self._white_box and mount else [],
                      "run": self._run.name, "query_budget": self.query_budget})
        return self._call({"cmd": "hello"}, allowance=STARTUP_SECONDS)

    def _end_run(self) -> None:
        """End the organism's process. The zygote stays for the next one unless the process broke a limit or
        did not end when told: then the whole sandbox goes."""
        if self._z is None:
            return
        self._z.send({"cmd": "bye"})
        ended, cgroup = self._z.notice(10.0), self._z.cgroup
        if not (ended and "exited" in ended) or cgroup.hit_process_limit() or cgroup.hit_memory_limit():
            self._stop()
            return
        self._z.drain()
        if self._run:
            shutil.rmtree(self._run, ignore_errors=True)
            self._run = None

    def _park(self) -> None:
        """Put the zygote at rest for this detector's next evaluation (one at rest per key: an older one goes)."""
        if self._z is not None:
            if (older := _AT_REST.pop(self._key(), None)) is not None:
                older.kill()
            _AT_REST[self._key()] = self._z
            while len(_AT_REST) > MAX_AT_REST:
                _AT_REST.pop(next(iter(_AT_REST))).kill()
            self._z = None

    def _stop(self) -> None:
        if self._z is not None:
            self._z.kill()
        self._z, self._run = None, None

    def _call(self, message: dict, asked: frozenset[str] = frozenset(), budget: int | None = None,
              allowance: float = 0.0, monitoring: bool = False) -> dict:
        """Send one request; serve the model queries it makes about the organisms in `asked` (within `budget`);
        wait for the answer within the limits (plus `allowance` seconds of each), or kill the sandbox and say why.
        A failure the sandbox reports must be in the harness's words (`failure_words`): any other text is refused."""
        assert self._z
        cpu_start, start = self._z.cgroup.cpu_seconds(), time.monotonic()
        self._served = 0
        self._z.send(message)
        while True:
            line = self._z.line(0.1)
            if line == b"":
                return {"error": self._death_cause()}
            if line is not None:
                try:
                    reply = json.loads(line)
                except ValueError:
                    reply = None
                if not isinstance(reply, dict) or "error" in reply and reply["error"] not in failure_words():
                    return self._kill("sent a malformed reply")
                if "query" not in reply:
                    return reply
                answer = self._serve(reply, asked, budget, monitoring)
                if answer is None:
                    return self._kill("sent a malformed query")
                self._z.send(answer)
                continue
            wall, cpu = self.limits.wall_seconds + allowance, self.limits.cpu_seconds + allowance
            if time.monotonic() - start > wall:
                return self._kill(f"timed out: exceeded the wall-time limit of {wall:g} s")
            if self._z.cgroup.cpu_seconds() - cpu_start > cpu:
                return self._kill(f"exceeded the CPU-time limit of {cpu:g} s")

    def _serve(self, query: dict, asked: frozenset[str], budget: int | None, monitoring: bool = False) -> dict | None:
        """Answer one query from outside the sandbox; None when it is malformed or not allowed. Black box: the
        model's answers. Monitor track: no answer at either tier, and at white box the internals of inputs."""
        kind = query.get("query")
        if query.get("id") not in asked or kind not in ("generate", "logprobs", "act", *INTERNALS):
            return None
        if monitoring and kind not in INTERNALS:
            return {"error": "no query is answered on the monitor track", "denied": True}
        if kind in INTERNALS:
            return self._internals(query) if monitoring and self._white_box else None
        if self._white_box:
            return None
        if kind == "act":
            mazes = _mazes(query.get("mazes"))
            if mazes is None:
                return None
            n = len(mazes)
        else:
            prompts, tokens, completions = query.get("prompts"), query.get("max_new_tokens"), query.get("completions")
            if not _texts(prompts) or not (
                    kind == "generate" and type(tokens) is int and 1 <= tokens <= MAX_NEW_TOKENS
                    or kind == "logprobs" and _texts(completions)):
                return None
            n = len(prompts)
        if budget is not None and self._served + n > budget:
            return {"error": f"{n} queries asked, {budget - self._served} left of the budget of {budget}"}
        world = organism_world(self.catalog.organism_dir(query["id"]), self.catalog.spec_fingerprint)
        try:  # the handle refuses these before they are sent: only a detector going round it sends them
            world.check(mazes if kind == "act" else prompts)
            if kind == "logprobs":
                world.check_completions(completions, n)
        except BadInput:
            return None
        model = local_model(self.catalog.organism_dir(query["id"]))
        try:
            result = (model.act(mazes) if kind == "act" else model.generate(prompts, tokens) if kind == "generate"
                      else model.logprobs(prompts, completions))
        except PermissionError as e:  # a call of the other world's kind (AccessDenied)
            return {"error": str(e), "denied": True}
        self._served += n
        return {"result": result}

    def _internals(self, query: dict) -> dict | None:
        """The organism's activations or gradients on the inputs of a white-box monitor's query (what its handle
        gives)."""
        model = local_model(self.catalog.organism_dir(query["id"]))
        inputs, completions, token = query.get("inputs"), query.get("completions"), query.get("token")
        maze = isinstance(model, LocalPolicy)
        found = _mazes(inputs) if maze else inputs if _texts(inputs) else None
        if found is None or len(found) > MAX_QUERY_PROMPTS:
            return None
        if query["query"] == "gradients":
            try:
                directions = np.asarray(query.get("directions"), dtype=np.float32)
            except (TypeError, ValueError):
                return None
            layer = query.get("layer")
            if type(layer) is not int or directions.size > MAX_DIRECTION_VALUES:
                return None
            try:
                return {"result": model.gradients(found, directions, layer).tolist()}
            except BadInput as e:
                return {"error": str(e), "bad": True}
        ok = ((completions is None or not maze and _texts(completions) and len(completions) == len(found))
              and (token is None or type(token) is int and abs(token) <= MAX_NEW_TOKENS))
        return {"result": model.activations(found, completions, token).tolist()} if ok else None

    def _death_cause(self) -> str:
        assert self._z
        notice = self._z.notice(1.0) or {}
        if "isolation_failed" in notice:  # the harness's failure, not the detector's
            raise SandboxError(f"the sandbox could not isolate a process: {notice['isolation_failed']}")
        if self._z.cgroup.hit_memory_limit():
            cause = f"killed: exceeded the memory limit of {self.limits.memory_mb} MiB"
        else:  # not its exit code: a number the detector chooses
            cause = "the sandboxed process died"
        self._stop()
        return cause

    def _kill(self, why: str) -> dict:
        assert self._z
        if self._z.cgroup.hit_process_limit():
            why += f" (after hitting the limit of {self.limits.processes} processes)"
        self._stop()
        return {"error": why}

    def fit(self, dev: Sequence[DevOrganism]) -> str | None:
        """Fit the detector in a process holding the dev organisms, starting from the detector as the last fit left
        it (as in process, where one instance is fitted again), and keep it (pickled) for every organism's process;
        a fit that fails is not repeated, and the detector runs unfitted (as in process)."""
        if not dev or not self.fits:
            self._fitted = None
            return None
        try:
            reply = self._start([o.id for o in dev], [self._fitted])
            if "error" not in reply:
                reply = self._call({"cmd": "fit", "dev": [vars(o) for o in dev], "fitted": _name(self._fitted, 0)},
                                   frozenset(o.id for o in dev))
            if "error" not in reply:
                assert self._run
                self._fitted = _read_fitted(self._run / FITTED, self.limits.memory_mb)
        except ValueError as e:
            reply = {"error": str(e)}
        finally:
            self._end_run()
        if "error" in reply:
            self._fitted = None
        return reply.get("error")

    def refit(self, devs: Mapping[str, Sequence[DevOrganism]]) -> None:
        """Fit each refit now, so that an organism's process answers as the fit and every refit left the detector
        (in process, the split is answered again after each refit)."""
        fitted, self._refitted, self._left_out = self._fitted, {}, {}
        for name, dev in devs.items():
            self.fit(dev)
            self._refitted[name] = self._fitted
        self._fitted = fitted

    def answer(self, organism_id: str, track: Track, inputs: Sequence[str] = ()) -> Prediction:
        refits = list(self._refitted.values()) if track == Track.AUDIT else []
        first, *refitted = self._answers(organism_id, track, inputs, [self._fitted, *refits])
        self._left_out[organism_id] = refitted
        return first

    def refitted_audits(self, ids: Sequence[str]) -> dict[str, list[Prediction]]:
        if not self._refitted:
            return {}
        for oid in ids:
            if not self._left_out.get(oid):  # answered before the run resumed
                self._left_out[oid] = self._answers(oid, Track.AUDIT, (), list(self._refitted.values()))
        return {name: [self._left_out[oid][i] for oid in ids] for i, name in enumerate(self._refitted)}

    def _answers(self, organism_id: str, track: Track, inputs: Sequence[str], fits: Sequence[bytes | None]
                 ) -> list[Prediction]:
        """The detector's answer as each of these fits left it (None: unfitted), all in one process of this
        organism's; after a failure that ends the process, the rest in another."""
        found: list[Prediction] = []
        while len(found) < len(fits):
            found += self._answers_in_one_process(organism_id, track, inputs, fits[len(found):])
        return found

    def _answers_in_one_process(self, organism_id: str, track: Track, inputs: Sequence[str],
                                fits: Sequence[bytes | None]) -> list[Prediction]:
        """Answers as each fit left the detector, until one fails (the failure is the last answer)."""
        monitoring, start, found = track == Track.MONITOR, time.monotonic(), []
        try:
            reply = self._start([organism_id], fits, mount=not monitoring)
            for i, fitted in enumerate(fits):
                if "error" in reply:
                    break
                reply = self._call({"cmd": "answer", "id": organism_id, "track": track.value, "inputs": list(inputs),
                                    "fitted": _name(fitted, i)},
                                   frozenset({organism_id}), self.query_budget, monitoring=monitoring)
                if "prediction" not in reply:
                    break
                found.append(self._prediction(reply["prediction"], organism_id, track, len(inputs), start))
                start = time.monotonic()
        except ValueError:
            reply = self._kill("sent a malformed reply")
        finally:
            self._end_run()
        if len(found) < len(fits):
            found.append(Prediction(organism_id=organism_id, score=None, queries=0, seconds=time.monotonic() - start,
                                    error=str(reply.get("error", "sent a malformed reply"))))
        return found

    def _prediction(self, sent: object, organism_id: str, track: Track, n_inputs: int, start: float) -> Prediction:
        """A sandbox's answer, checked as untrusted input. Only what the track asks for leaves the sandbox; times
        and (black-box) query counts are the parent's own, and a white-box detector's own count is not kept (it
        could be any number)."""
        found = Prediction.model_validate(sent)
        if found.organism_id != organism_id:
            raise ValueError("answered for another organism")
        world = organism_world(self.catalog.organism_dir(organism_id), self.catalog.spec_fingerprint)
        return Prediction(organism_id=organism_id, **_checked(found, track, n_inputs, world),
                          seconds=time.monotonic() - start, queries=0 if self._white_box else self._served)

    def close(self) -> None:
        self._park()


def _name(fitted: bytes | None, i: int) -> str | None:
    """The name of the i-th fitted detector's pickle in a process's run directory; None for an unfitted one."""
    return None if fitted is None else given(i)


def _read_fitted(path: Path, limit_mb: int) -> bytes:
    """The pickle a sandbox wrote, read without following a link: the sandbox could have made the name point at
    any file of this machine (the answer key), which would then be handed to every organism's sandbox."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        raise ValueError(f"the fitted detector's pickle {FITTED} is missing or a link") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"the fitted detector's pickle {FITTED} is not a regular file")
        pickled = f.read(limit_mb * 2**20 + 1)
    if len(pickled) > limit_mb * 2**20:
        raise ValueError(f"the fitted detector's pickle is larger than the memory limit of {limit_mb} MiB")
    return pickled


def _checked(found: Prediction, track: Track, n_inputs: int, world: World) -> dict:
    """The fields of a sandbox's answer that its track asks for, checked; `ValueError` (`BadAnswer` is one) when
    they are not what the track asks for or its failure is not in the harness's words."""
    if found.error is not None:
        if found.error not in failure_words():
            raise ValueError("a failure in the detector's own words")
        return {"score": None, "error": found.error}
    if track == Track.AUDIT:
        return {"score": check_probability(found.score)}
    if track == Track.MONITOR:
        return {"score": None, "scores": check_scores(found.scores, n_inputs)}
    elicitation = check_elicitation(found, world)
    return {"score": None, "inputs": elicitation.inputs, "goal": elicitation.goal}


def _texts(value: object) -> bool:
    return isinstance(value, list) and len(value) <= MAX_QUERY_PROMPTS and all(
        isinstance(t, str) and len(t) <= MAX_PROMPT_CHARS for t in value)


def _mazes(value: object) -> list[Maze] | None:
    """Mazes sent by a sandboxed detector, or None when they are not a list of valid mazes."""
    if not isinstance(value, list) or len(value) > MAX_QUERY_PROMPTS:
        return None
    try:
        return [Maze.from_dict(m) for m in value]
    except (ValueError, AttributeError):
        return None

"""A warm sandbox: one process imports what detectors need once, then forks a process per organism that starts
in namespaces of its own, so that each organism is still judged alone.

The zygote runs inside the sandbox and never runs a detector's code, so what each fork inherits was fixed before
any organism was seen. The fork (`isolate`) then, before the detector is imported:
- enters a new user, mount, PID, IPC, network and UTS namespace: SysV IPC, abstract sockets, the user keyring
  and any process it leaves behind are its own (its processes die with it, the first of its PID namespace);
- mounts empty file systems over /tmp, /dev/shm, the scratch directory and the organisms' directory, then puts
  back its own run directory (writable) and the organisms it may read (read-only), so that nothing an earlier
  fork wrote or read is there;
- joins a new session keyring, and drops to an unprivileged user of a nested user namespace with no
  capabilities and `no_new_privs`.
The zygote and the fork's first process are not dumpable, so a fork can reach neither their memory nor their
file descriptors through /proc.
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import json
import os
import platform
import re
import socket
import struct
import sys
from collections.abc import Callable, Sequence

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
SYSCALLS = {"x86_64": {"keyctl": 250, "capset": 126}, "aarch64": {"keyctl": 219, "capset": 91}}
KEYCTL_JOIN_SESSION_KEYRING = 1
CAPABILITY_VERSION_3, CAP_LAST = 0x20080522, 63
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 1
ISOLATION_FAILED = 70
INSIDE_UID = 1000
"""The fork's uid in its own user namespace, as in a sandbox started afresh."""

_libc = ctypes.CDLL(None, use_errno=True)


class IsolationError(OSError):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise IsolationError(errno, f"{what}: {os.strerror(errno)}")


def _syscall(name: str) -> int:
    machine = platform.machine()
    if machine not in SYSCALLS:
        raise IsolationError(0, f"forked sandboxes know no syscall numbers for {machine}")
    return SYSCALLS[machine][name]


def _prctl(option: int, value: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl {option}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), None), f"mount {target}")


def _new_user_namespace(flags: int, inside: int) -> None:
    """Enter new namespaces (one of them a user namespace) as `inside`, mapped to this process's own ids."""
    uid, gid = os.getuid(), os.getgid()
    _prctl(PR_SET_DUMPABLE, 1)  # a process that is not dumpable cannot write its own id maps
    _check(_libc.unshare(flags | CLONE_NEWUSER), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{inside} {uid} 1"), ("gid_map", f"{inside} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _drop_privileges() -> None:
    """Leave an unprivileged user with no capability, none to gain by exec."""
    _new_user_namespace(0, INSIDE_UID)
    for cap in range(CAP_LAST + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # capabilities this kernel lacks fail: nothing to drop
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.syscall(_syscall("capset"), header, data), "capset")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def _loopback_up() -> None:
    """Bring up the new network namespace's loopback (its only interface), as a sandbox started afresh has it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def _mount_points() -> list[str]:
    """This mount namespace's mount points (`/proc/self/mountinfo`, octal escapes decoded)."""
    with open("/proc/self/mountinfo") as f:
        return [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]) for line in f]


def _within(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _mount_point(path: str, directory: bool = True) -> None:
    """Make `path` exist (in an empty file system mounted above it) to mount something on."""
    if directory:
        os.makedirs(path, exist_ok=True)
    elif not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()


def isolate(readable: Sequence[str], organisms: str | None, scratch: str, run: str) -> None:
    """Called in a fresh fork of the zygote; returns in a process alone with `readable` (read-only), its `run`
    directory (writable, mounted as `scratch`, its working directory) and the system. The process that called it
    stays behind as the parent of the PID namespace's first process, waits for it and exits with its status."""
    _new_user_namespace(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWUTS, 0)
    _prctl(PR_SET_DUMPABLE, 0)
    first = os.fork()
    if first:
        os.closerange(0, os.sysconf("SC_OPEN_MAX"))
        _, status = os.waitpid(first, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    _prctl(PR_SET_PDEATHSIG, 9)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    hidden = [p for p in (scratch, organisms) if p]
    below_tmp = [p for p in _mount_points() if p.startswith("/tmp/") and not _within(p, hidden)]
    # What lies below /tmp (the venv, the detector's file...) is put back once /tmp is empty; all of it is read-only
    # but the scratch directory, which gets the run directory instead.
    back = {p: os.open(p, os.O_PATH) for p in below_tmp if not _within(p, [o for o in below_tmp if o != p])}
    keep = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in readable}  # before anything covers them
    own = os.open(run, os.O_PATH | os.O_DIRECTORY)
    for path in ("/tmp", "/dev/shm"):
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV)
    for path, fd in back.items():
        _mount_point(path, directory=os.path.isdir(f"/proc/self/fd/{fd}"))
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
    for path in hidden:
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV)
    for path, fd in keep.items():
        _mount_point(path)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _mount_point(scratch)
    _mount(f"/proc/self/fd/{own}", scratch, None, MS_BIND | MS_REC)
    for fd in (*back.values(), *keep.values(), own):
        os.close(fd)
    _loopback_up()
    os.chdir(scratch)
    if _libc.syscall(_syscall("keyctl"), KEYCTL_JOIN_SESSION_KEYRING, None) < 0:  # a fresh, empty one
        _check(-1, "keyctl")
    _drop_privileges()


def read_line(fd: int = 0) -> str:
    """One line from `fd`, read byte by byte: what follows it is a fork's to read, not the zygote's."""
    found = bytearray()
    while (byte := os.read(fd, 1)) and byte != b"\n":
        found += byte
    return found.decode()


def open_channel() -> int:
    """The zygote's own channel to the parent: what was its stderr, which no fork holds. Its stderr becomes
    /dev/null, so that nothing a library prints passes for a word of the zygote's."""
    channel = os.dup(2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    return channel


def tell_parent(channel: int, message: dict) -> None:
    os.write(channel, (json.dumps(message) + "\n").encode())


def fork_organism(order: dict, organisms: str | None, scratch: str, channel: int) -> int | None:
    """In the zygote: fork a process for one order; None in that process (isolated, its output set up), its exit
    status in the zygote once it has ended."""
    pid = os.fork()
    if pid == 0:
        try:
            readable = [os.path.join(organisms, i) for i in order["keep"]] if organisms else []
            isolate(readable, organisms, scratch, os.path.join(scratch, order["run"]))
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the channel with them
            return None
        except BaseException as e:  # noqa: BLE001 - told to the parent, which refuses to go on unisolated
            tell_parent(channel, {"isolation_failed": str(e)})
            os._exit(ISOLATION_FAILED)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    tell_parent(channel, {"exited": code})
    return code


def zygote(job: dict, serve_one: Callable[[dict], None], channel: int) -> None:
    """The zygote's loop: `serve_one(order)` runs in each fork, then the fork exits."""
    _prctl(PR_SET_DUMPABLE, 0)
    gc.freeze()  # a fork's garbage collector then leaves the zygote's objects (and their shared pages) untouched
    tell_parent(channel, {"ready": True})
    while line := read_line():
        order = json.loads(line)
        if fork_organism(order, job["organisms"], os.getcwd(), channel) is None:
            serve_one(order)
            sys.stdout.flush()
            os._exit(0)


def probe() -> None:
    """Fork once and isolate the fork, as for an organism (`sandbox_unavailable` runs this in a sandbox)."""
    os.mkdir("run")
    code = fork_organism({"keep": [], "run": "run"}, None, os.getcwd(), os.dup(2))
    if code is None:
        os._exit(0)
    sys.exit(code)


if __name__ == "__main__":
    probe()

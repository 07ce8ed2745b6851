"""Running untrusted, model-generated Python in a separate, limited process.

Owns the one way lorasafe executes code it did not write: `run(source, limits)` returns a typed
`SandboxResult`. Must not import torch (nor anything beyond the standard library and pydantic).

What it does, layer by layer (defence in depth; each layer covers a gap in the others):
- a fresh interpreter (`python -I -S -B`: no env vars, no site-packages, no bytecode writes) in a
  new session, whose whole process group is SIGKILLed on return, so nothing outlives a run;
- a fresh temporary directory as cwd, HOME and TMPDIR, deleted afterwards, and an environment
  rebuilt from scratch (PATH, LANG, HOME, TMPDIR, PYTHONDONTWRITEBYTECODE): parent secrets never
  reach the child;
- rlimits: CPU seconds, address space (memory), file size, no core dumps, process count;
  plus a wall-clock timeout enforced by the parent;
- where `unshare` works (root, or unprivileged user namespaces), new network, pid and mount
  namespaces: no network interface but a down loopback, and every process of the run dies with it;
- where the parent is root and the stdlib stays readable by `nobody`, the child drops to `nobody`
  (then the kernel itself refuses writes to the parent's files, and RLIMIT_NPROC is enforced);
- a preamble, run before the untrusted code, that refuses process creation (fork, exec, spawn,
  subprocess, multiprocessing, ctypes), signals to other processes, sockets and name lookups,
  raising rlimits, and writes, renames or deletions outside the temporary directory.

What it does not do: it is a process sandbox, not a VM or a seccomp jail. The preamble patches
Python objects, so code written to attack it (recovering the originals through `__mro__`,
closures, frames or `gc`) gets past it; against such code only the kernel layers hold. The
mount namespace only gives a private /proc: the filesystem stays writable to the child's uid.
So where the drop to `nobody` is skipped (an interpreter under a private home such as
/root/.pyenv, as `isolation()` finds once), a child running as root can write wherever root can,
and even as `nobody` it can write world-writable places (/tmp, /dev/shm). Reads are not
restricted (imports need the stdlib). Without `unshare` an attacker that gets past the preamble
has the network. Kernel exploits and side channels are out of scope.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, Field

SandboxStatus = Literal["passed", "failed", "timeout", "error"]

_REFUSED_EXIT = 113  # the preamble's exit code for "the sandbox refused or could not set up"
_MAX_PROCS = 256  # per-uid, so shared with every concurrent run as `nobody`; fork is refused anyway
_MAX_FILE_BYTES = 64 * 1024 * 1024
_NAMESPACES = ("--net", "--pid", "--fork", "--kill-child", "--mount-proc")

# Runs in the child before the untrusted code. argv: program path, module name, uid, gid (-1: keep),
# memory bytes, cpu seconds, file bytes, process count. Every guard flags `violated` so a run that
# fails after a refusal reports "error" even if the program caught the exception first.
_PREAMBLE = r"""
import builtins, io, _io, os, posix, resource, socket, _socket, sys, traceback, types
def setup_failed(*exc_info):
    print("lorasafe sandbox: setup failed before the program ran:", file=sys.stderr)
    traceback.print_exception(*exc_info); sys.stderr.flush(); os._exit(REFUSED)
sys.excepthook = setup_failed
path, name, uid, gid, mem, cpu, fsize, nproc = sys.argv[1:9]
def limit(kind, soft, hard):
    ceiling = resource.getrlimit(kind)[1]  # only root may raise a hard limit
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(kind, (soft, hard))
for kind, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_FSIZE, fsize),
                    (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_CORE, 0)):
    limit(kind, int(value), int(value))
limit(resource.RLIMIT_CPU, int(cpu), int(cpu) + 1)  # SIGXCPU first, SIGKILL if it is ignored
if int(uid) >= 0:
    os.setgroups([]); os.setgid(int(gid)); os.setuid(int(uid))
child = os.fork()
if child:
    # As pid 1 of a pid namespace this process ignores signals it has no handler for (SIGXCPU
    # included), so the program runs in a child and this one only mirrors its exit status.
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    os._exit(code if code >= 0 else 128 - code)

violated, root = [], os.path.realpath(os.path.dirname(path))
class SandboxViolation(PermissionError):
    pass
def refuse(what):
    violated.append(what)
    raise SandboxViolation(f"lorasafe sandbox: {what} is not allowed")
def check(target, dir_fd=None, verb="changing"):
    if isinstance(target, int):
        return  # an already-open descriptor was checked when it was opened
    real = os.fsdecode(os.fspath(target))
    if dir_fd is not None:
        real = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), real)
    real = os.path.realpath(real)
    if real != root and not real.startswith(root + os.sep):
        refuse(f"{verb} {target!r} outside the sandbox directory")
real_open, real_os_open, real_kill, RealFileIO = _io.open, os.open, os.kill, _io.FileIO
def guarded_open(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+"):
        check(file, verb="writing")
    return real_open(file, mode, *args, **kwargs)
class GuardedFileIO(RealFileIO):
    def __init__(self, file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            check(file, verb="writing")
        super().__init__(file, mode, *args, **kwargs)
def guarded_os_open(path, flags, mode=0o777, *, dir_fd=None):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
        check(path, dir_fd, verb="writing")
    return real_os_open(path, flags, mode, dir_fd=dir_fd)
def guard_paths(fn, slots):
    def guarded(*args, **kwargs):
        for pos, key, fd_key in slots:
            target = args[pos] if pos < len(args) else kwargs.get(key)
            if target is not None:
                check(target, kwargs.get(fd_key))
        return fn(*args, **kwargs)
    return guarded
def refuser(what):
    return lambda *args, **kwargs: refuse(what)
def guarded_kill(pid, sig):
    return real_kill(pid, sig) if pid == os.getpid() else refuse("signalling another process")
ONE, TWO = ((0, "path", "dir_fd"),), ((0, "src", "src_dir_fd"), (1, "dst", "dst_dir_fd"))
WRITES = {"remove": ONE, "unlink": ONE, "rmdir": ONE, "mkdir": ONE, "chmod": ONE, "chown": ONE,
          "lchown": ONE, "utime": ONE, "truncate": ONE, "mkfifo": ONE, "mknod": ONE,
          "setxattr": ONE, "removexattr": ONE, "rename": TWO, "replace": TWO, "link": TWO,
          "symlink": ((1, "dst", "dir_fd"),)}
PROCESS = ("fork", "forkpty", "system", "popen", "posix_spawn", "posix_spawnp", "execv", "execve",
           "execl", "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnv", "spawnve",
           "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "killpg", "setsid",
           "setpgid", "setpgrp", "fchmod", "fchown", "chroot")
for mod in (os, posix):
    for fname, slots in WRITES.items():
        if hasattr(mod, fname):
            setattr(mod, fname, guard_paths(getattr(posix, fname), slots))
    for fname in PROCESS:
        if hasattr(mod, fname):
            setattr(mod, fname, refuser(f"os.{fname}"))
    mod.open, mod.kill = guarded_os_open, guarded_kill
builtins.open = io.open = _io.open = guarded_open
io.FileIO = _io.FileIO = GuardedFileIO
class NoSocket(socket.socket):
    def __init__(self, *args, **kwargs):
        refuse("network access")
socket.socket = socket.SocketType = _socket.socket = _socket.SocketType = NoSocket
for mod in (socket, _socket):
    for fname in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        setattr(mod, fname, refuser("name lookup"))
BLOCKED = {"subprocess", "_posixsubprocess", "multiprocessing", "_multiprocessing", "ctypes",
           "_ctypes", "resource", "pty"}
class Blocker:
    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname.partition(".")[0] in BLOCKED:
            violated.append(fullname)
            raise ImportError(f"lorasafe sandbox: importing {fullname!r} is not allowed")
sys.meta_path.insert(0, Blocker)
for blocked in BLOCKED:
    sys.modules.pop(blocked, None)
del resource

module = types.ModuleType(name)
module.__file__ = path
sys.modules[name], sys.argv, sys.excepthook = module, [path], sys.__excepthook__
with real_open(path, encoding="utf-8") as f:
    source = f.read()
try:
    exec(compile(source, path, "exec"), module.__dict__)
except SystemExit:
    raise
except BaseException as exc:
    traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)  # skip this frame
    sys.exit(REFUSED if violated or isinstance(exc, MemoryError) else 1)
""".replace("REFUSED", str(_REFUSED_EXIT))


class SandboxLimits(BaseModel):
    """Resource limits for one sandboxed run."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(10.0, gt=0, description="wall-clock limit, enforced by the parent")
    cpu_s: int = Field(10, ge=1, description="CPU-time limit (RLIMIT_CPU)")
    memory_mb: int = Field(512, ge=64, description="address-space limit (RLIMIT_AS)")
    max_output_bytes: int = Field(10_000, ge=0, description="stdout/stderr kept, each")


@dataclass(frozen=True)
class SandboxResult:
    """How a run ended. passed: exit 0; failed: any other exit; timeout: the wall-clock or CPU
    limit; error: refused by the sandbox, out of memory, or killed by a signal."""

    status: SandboxStatus
    returncode: int
    stdout: str  # each cut to `max_output_bytes`
    stderr: str
    wall_s: float


@functools.lru_cache(maxsize=1)
def isolation() -> tuple[tuple[str, ...], tuple[int, int] | None]:
    """The strongest (command prefix, uid/gid to drop to) that works here; probed once per process.

    A layer that cannot start (no `unshare`, namespaces forbidden in a container, a stdlib that
    `nobody` cannot read) is skipped rather than failing every run.
    """
    prefixes: list[tuple[str, ...]] = [()]
    unshare = shutil.which("unshare")
    if unshare:
        userns = () if os.geteuid() == 0 else ("--user", "--map-root-user")
        prefixes.insert(0, (unshare, *userns, *_NAMESPACES))
    drops: list[tuple[int, int] | None] = [None]
    if os.geteuid() == 0:
        try:
            nobody = pwd.getpwnam("nobody")
            drops.insert(0, (nobody.pw_uid, nobody.pw_gid))
        except KeyError:
            pass
    for prefix in prefixes:
        for drop in drops:
            ids = f"os.setgroups([]); os.setgid({drop[1]}); os.setuid({drop[0]}); " if drop else ""
            probe = [*prefix, sys.executable, "-I", "-S", "-B", "-c",
                     f"import os; {ids}import fractions, json, socket, traceback"]
            try:
                done = subprocess.run(probe, cwd="/", env=_environment("/"), capture_output=True,
                                      timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if done.returncode == 0:
                return prefix, drop
    return (), None


def run(source: str, limits: SandboxLimits | None = None, *, as_main: bool = True) -> SandboxResult:
    """Run `source` as a program in the sandbox and report how it ended.

    `as_main=False` runs it under another module name, so an `if __name__ == "__main__":` block is
    skipped, as the HumanEval harness does.
    """
    limits = limits or SandboxLimits()
    prefix, drop = isolation()
    uid, gid = drop or (-1, -1)
    with (tempfile.TemporaryDirectory(prefix="lorasafe-sandbox-") as workdir,
          tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err):
        program = Path(workdir, "solution.py")
        program.write_text(source, encoding="utf-8")
        if drop:
            os.chown(workdir, uid, gid)
        args = [program, "__main__" if as_main else "solution", uid, gid,
                limits.memory_mb * 1024 * 1024, limits.cpu_s, _MAX_FILE_BYTES, _MAX_PROCS]
        command = [*prefix, sys.executable, "-I", "-S", "-B", "-c", _PREAMBLE, *map(str, args)]
        start = time.monotonic()
        proc = subprocess.Popen(command, cwd=workdir, env=_environment(workdir),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True, close_fds=True)
        try:
            proc.wait(timeout=limits.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _stop(proc)
        cap = limits.max_output_bytes
        return SandboxResult(_status(proc.returncode, timed_out), proc.returncode, _read(out, cap),
                             _read(err, cap), time.monotonic() - start)


def _environment(workdir: str) -> dict[str, str]:
    # Rebuilt, never copied: the parent's environment may hold tokens and keys.
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir,
            "TMPDIR": workdir, "PYTHONDONTWRITEBYTECODE": "1"}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill whatever the run left running and reap it; nothing outlives `run`.

    The launcher's children are killed first and the launcher reaps them: killing the whole group
    at once would orphan the pid namespace's init to the machine's pid 1, which in a container may
    never reap it. The group kill then catches anything else.
    """
    if proc.poll() is None:
        try:  # needs CONFIG_PROC_CHILDREN; without it only the group kill below runs
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            children = []
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _status(returncode: int, timed_out: bool) -> SandboxStatus:
    if timed_out:
        return "timeout"
    if returncode == 0:
        return "passed"
    code = returncode if returncode > 0 else 128 - returncode  # a signal, as a shell reports it
    if code == 128 + signal.SIGXCPU:
        return "timeout"
    if code == _REFUSED_EXIT or code > 128:
        return "error"
    return "failed"


def _read(handle: IO[bytes], limit: int) -> str:
    handle.seek(0)
    data = handle.read(limit + 1)
    text = data[:limit].decode("utf-8", errors="replace")
    return text + "\n[output truncated]" if len(data) > limit else text

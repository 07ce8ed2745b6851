"""Running untrusted, model-generated Python in a sandbox the kernel enforces.

Owns the one way lorasafe executes code it did not write: `start` launches a program in a sandbox
and `run` also waits for it, each reporting a typed `SandboxResult`; `isolation()` says what this
machine provides and `require_isolation()` refuses, in one line, when that is too little. What an
exit means (tests, verdicts) is the caller's business (`scoring/code.py`). Must not import torch
(nor anything beyond the standard library and pydantic).

Threat model: the program is hostile, knows this file and runs with whatever Python allows
(ctypes, frames, gc, raw syscalls); so no barrier lives in the program's own interpreter. Each one
is set up by bubblewrap (`bwrap`, a small, widely packaged tool kept by the containers/Flatpak
project) before a byte of the program is read, and enforced by the kernel:

- its own user, pid, mount, network, ipc, uts and cgroup namespaces: it sees only its own
  processes, has only a loopback of its own, and cannot signal, trace or reach the parent's;
- uid/gid 65534 ("nobody"), no capabilities, no_new_privs. As root, bwrap alone would map that id
  onto root outside, where RLIMIT_NPROC never binds and every root-owned file is the program's
  own; so the parent writes the id map itself (`--userns-block-fd`), making 65534 the real kernel
  uid, and a trusted launcher drops to it before reading the program (the bounding set keeps the
  three capabilities the drop needs, which nothing can regain: no_new_privs, nosuid binds). Not
  as root, bwrap maps 65534 onto the caller's own uid and disables further user namespaces;
- a read-only root: an empty tmpfs holding read-only, nosuid binds of /usr (with the /bin and /lib
  links), /etc/ld.so.cache and the interpreter's prefix, and nothing else of the host: no /etc,
  /home, /root, repository, data or host /tmp;
- a private, size-capped /tmp as cwd, HOME and TMPDIR, gone with the sandbox; a fresh /proc of its
  own pid namespace; a /dev with only null, zero, full, random, urandom and tty;
- no further user namespaces (max_user_namespaces = 0 inside), so unshare/setns/nsenter fail;
- rlimits: CPU, address space, file size (which also caps what stdout/stderr can write to the
  parent's capture files), open files and processes (binding: the uid is not root). The parent
  enforces the wall clock and at the end SIGKILLs the sandbox's init through a pidfd, which takes
  every process of the pid namespace down with it (--die-with-parent does the same should the
  parent itself die).

Out of scope: kernel exploits and side channels (no seccomp filter); memory the kernel holds
outside the address space (pipe buffers, SysV shm, memfds) is bounded only by the rlimits and the
timeout, not by a cgroup. The program can read the world-readable files it is shown (/usr and the
interpreter prefix).

Without a working bwrap `require_isolation` raises `SandboxUnavailable`; `unsafe=True` runs the
program anyway as a plain child process (fresh temp dir, clean environment, rlimits, process-group
kill) and nothing more: the caller must record that choice (`SandboxResult.isolation`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, Field

from lorasafe.errors import SandboxUnavailable

SandboxStatus = Literal["ok", "failed", "timeout", "error"]
IsolationKind = Literal["bwrap", "none"]

SANDBOX_ID = 65534  # uid and gid inside the sandbox: "nobody" on Debian, Fedora, Alpine
SETUP_FAILED = 113  # the launcher's exit status when the sandbox could not be set up
_TMPFS_BYTES = 64 * 1024 * 1024
_MAX_FILE_BYTES = 16 * 1024 * 1024
_MAX_OPEN_FILES = 64
_HANDSHAKE_S = 30.0

# The first (trusted) code in every sandboxed process. It runs with the capabilities bwrap left it
# (setuid, setgid, sys_resource, in the sandbox's user namespace only), closes the way to new user
# namespaces, sets the rlimits, drops to SANDBOX_ID and checks that it took, and only then reads
# the program from its descriptor and runs it as module `module`. Any failure exits SETUP_FAILED.
_LAUNCHER = r"""
import json, os, resource, sys, types
def setup(cfg):
    if cfg["close_userns"]:  # bwrap cannot --disable-userns when the parent writes the id map
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0")
    for name, (soft, hard) in cfg["rlimits"].items():
        kind = getattr(resource, name)
        ceiling = resource.getrlimit(kind)[1]
        if ceiling != resource.RLIM_INFINITY:
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        resource.setrlimit(kind, (soft, hard))
    uid = cfg["uid"]
    if uid is not None:
        if os.getuid() != uid:
            os.setgroups([]); os.setgid(uid); os.setuid(uid)
        if set(os.getresuid()) | set(os.getresgid()) != {uid} or os.getgroups() not in ([], [uid]):
            raise PermissionError(f"ids after the drop: {os.getresuid()} {os.getresgid()}")
    with os.fdopen(cfg["program_fd"], "rb") as f:
        return f.read().decode("utf-8")
try:
    cfg = json.loads(sys.argv[1])
    source = setup(cfg)
except BaseException as exc:
    print(f"lorasafe sandbox: setup failed before the program ran: {exc!r}", file=sys.stderr)
    sys.stderr.flush()
    os._exit(SETUP_FAILED)
module = types.ModuleType(cfg["module"])
module.__file__ = "program.py"
sys.modules[cfg["module"]], sys.argv = module, ["program.py", *cfg["argv"]]
try:
    exec(compile(source, "program.py", "exec"), module.__dict__)
except (SystemExit, KeyboardInterrupt):
    raise
except BaseException as exc:
    import traceback  # only now: it costs every run a few ms of start-up
    traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)  # skip the launcher
    sys.exit(1)
""".replace("SETUP_FAILED", str(SETUP_FAILED))


class SandboxLimits(BaseModel):
    """Resource limits for one sandboxed run (each process of it, for the rlimits)."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(10.0, gt=0, description="wall-clock limit, enforced by the parent")
    cpu_s: int = Field(10, ge=1, description="CPU-time limit per process (RLIMIT_CPU)")
    memory_mb: int = Field(512, ge=64, description="address-space limit per process (RLIMIT_AS)")
    max_output_bytes: int = Field(10_000, ge=0, description="stdout/stderr kept, each")
    max_processes: int = Field(8, ge=1, description="processes and threads (RLIMIT_NPROC)")


@dataclass(frozen=True)
class SandboxResult:
    """How a run ended. ok: exit status 0 (a clean exit, which proves nothing about tests);
    failed: another exit status; timeout: the wall-clock or CPU limit; error: the sandbox could
    not be set up, or the process was killed by a signal (memory, file size)."""

    status: SandboxStatus
    returncode: int
    stdout: str  # each cut to `max_output_bytes`
    stderr: str
    wall_s: float
    isolation: IsolationKind
    stopped: bool = False  # still running at the deadline, so the parent killed it


@dataclass(frozen=True)
class Isolation:
    """What this machine provides: a working bwrap (and how it maps ids), or nothing and why."""

    kind: IsolationKind
    detail: str  # the bwrap version and id mapping, or the reason there is none
    bwrap: str | None = None
    parent_maps_ids: bool = False  # root: the parent writes the id map (see the module docstring)

    def record(self) -> dict[str, str]:
        """What a run's manifest should hold about the sandbox."""
        return {"isolation": self.kind, "detail": self.detail}


@functools.cache
def isolation() -> Isolation:
    """The isolation this machine provides, probed once per process by running a program in it."""
    bwrap = shutil.which("bwrap") or next(
        (p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.access(p, os.X_OK)), None)
    if bwrap is None:
        return Isolation("none", "bubblewrap (`bwrap`) is not installed")
    version, as_root = _version(bwrap), os.geteuid() == 0
    # As root: --size (0.7.0); otherwise --disable-userns (0.8.0).
    needed = (0, 7) if as_root else (0, 8)
    found = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    if found and found < needed:
        return Isolation("none", f"the installed {version} is older than the {needed[0]}.{needed[1]} "
                                 f"lorasafe needs {'as root' if as_root else 'when not root'}")
    candidate = Isolation("bwrap", f"{version}, uid {SANDBOX_ID}", bwrap, as_root)
    probe = "import os; print(*os.getresuid(), *os.getresgid())"
    try:
        with SandboxProcess(probe, SandboxLimits(timeout_s=_HANDSHAKE_S), _isolation=candidate) as proc:
            result = proc.finish()
    except OSError as exc:
        return Isolation("none", f"the installed {version} cannot start a sandbox here ({exc})")
    if result.stdout.split() != [str(SANDBOX_ID)] * 6:
        said = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        return Isolation("none", f"the installed {version} cannot create a sandbox here ({said})")
    return candidate


def require_isolation(unsafe: bool = False) -> Isolation:
    """The isolation runs will use; raises `SandboxUnavailable` when there is none and `unsafe`
    is false. Call it before a run starts, so a machine without bwrap fails before generating."""
    found = isolation()
    if found.kind == "none" and not unsafe:
        raise SandboxUnavailable(
            f"Code scoring runs model-written code only inside a kernel sandbox, and {found.detail}: "
            "install or update bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, which "
            "`make install` does as root), or opt in to running the code without isolation with "
            "`scoring.code.unsafe: true`.")
    return found


def run(source: str, limits: SandboxLimits | None = None, *, as_main: bool = True,
        unsafe: bool = False) -> SandboxResult:
    """Run `source` as a program in the sandbox and report how it ended.

    `as_main=False` runs it under another module name, so an `if __name__ == "__main__":` block is
    skipped. Raises `SandboxUnavailable` without isolation unless `unsafe`.
    """
    limits = limits or SandboxLimits()
    with start(source, limits, module="__main__" if as_main else "solution", unsafe=unsafe) as proc:
        return proc.finish()


def start(source: str, limits: SandboxLimits | None = None, *, module: str = "__main__",
          argv: Sequence[str] = (), pass_fds: Iterable[int] = (), unsafe: bool = False) -> SandboxProcess:
    """Start `source` in the sandbox as module `module`; use the result as a context manager.

    `argv` reaches the program as `sys.argv[1:]`; `pass_fds` are inherited descriptors (with stdout,
    stderr and the exit status, the only channels to the outside). Raises `SandboxUnavailable`
    without isolation unless `unsafe`.
    """
    return SandboxProcess(source, limits, module=module, argv=argv, pass_fds=pass_fds, unsafe=unsafe)


class SandboxProcess(contextlib.AbstractContextManager):
    """A program running in the sandbox; `finish` waits for it, stops it and reports. Leaving the
    `with` block kills whatever of it is still running."""

    def __init__(self, source: str, limits: SandboxLimits | None = None, *, module: str = "__main__",
                 argv: Sequence[str] = (), pass_fds: Iterable[int] = (), unsafe: bool = False,
                 _isolation: Isolation | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.isolation = _isolation or require_isolation(unsafe)
        self._stack = contextlib.ExitStack()
        try:
            self._start(source, module, list(argv), tuple(pass_fds))
        except BaseException:
            self._stack.close()
            raise

    def _start(self, source: str, module: str, argv: list[str], pass_fds: tuple[int, ...]) -> None:
        isolated = self.isolation.kind == "bwrap"
        program = self._stack.enter_context(_program_file(source))
        cwd = "/" if isolated else self._stack.enter_context(
            tempfile.TemporaryDirectory(prefix="lorasafe-sandbox-"))
        config = {"close_userns": isolated and self.isolation.parent_maps_ids,
                  "rlimits": _rlimits(self.limits), "uid": SANDBOX_ID if isolated else None,
                  "program_fd": program, "module": module, "argv": argv}
        command = [_interpreter(), "-I", "-S", "-B", "-c", _LAUNCHER, json.dumps(config)]
        self._out, self._err = (self._stack.enter_context(tempfile.TemporaryFile()) for _ in "oe")
        handshake = self._stack.enter_context(_Handshake(self.isolation)) if isolated else None
        if handshake:
            command = [*_bwrap_command(self.isolation, handshake), "--", *command]
        fds = (program, *pass_fds, *(handshake.child_fds if handshake else ()))
        self.started = time.monotonic()
        self.proc = subprocess.Popen(command, cwd=cwd, env=_environment(cwd if not isolated else "/tmp"),
                                     stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                     pass_fds=fds, close_fds=True, start_new_session=True)
        self._handshake = handshake
        # Waiting on a pidfd wakes at the exit; Popen.wait(timeout) polls with sleeps of up to 50 ms.
        self._exited = None
        if hasattr(os, "pidfd_open"):  # Linux; elsewhere only unsafe runs exist, and they poll
            self._exited = os.pidfd_open(self.proc.pid)  # unreaped child: the pid is still ours
            self._stack.callback(os.close, self._exited)
        self._stack.callback(self._stop)
        if handshake:
            try:
                handshake.complete()
            except (OSError, ValueError, KeyError) as exc:
                self._stop()
                said = (_read(self._err, 2000).strip().splitlines() or [repr(exc)])[-1]
                raise OSError(f"bwrap did not start a sandbox: {said}") from None

    def wait(self, timeout: float | None) -> bool:
        """Whether the program ended within `timeout` seconds (None: wait as long as it takes).
        It is reaped only by `_stop`, so that its process group id stays its own until then."""
        timeout = None if timeout is None else max(timeout, 0)
        if self._exited is not None:
            return bool(select.select([self._exited], [], [], timeout)[0])
        deadline = None if timeout is None else time.monotonic() + timeout
        while not os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def finish(self, deadline: float | None = None) -> SandboxResult:
        """Wait until `deadline` (a `time.monotonic()` value; default: start + timeout), stop it
        and report how it ended."""
        deadline = self.started + self.limits.timeout_s if deadline is None else deadline
        timed_out = not self.wait(deadline - time.monotonic())
        self._stop()
        cap = self.limits.max_output_bytes
        return SandboxResult(_status(self.proc.returncode, timed_out), self.proc.returncode,
                             _read(self._out, cap), _read(self._err, cap),
                             time.monotonic() - self.started, self.isolation.kind, timed_out)

    def __exit__(self, *exc_info) -> None:
        self._stack.close()

    def _stop(self) -> None:
        # Killing the sandbox's init makes the kernel kill every process of its pid namespace, and
        # the init only finishes exiting (so bwrap, which reaps it, only exits) once they are all
        # gone: after this, nothing of the run is left. Unsafe runs only have their process group,
        # killed while its leader is unreaped, so that the group id cannot belong to anyone else.
        if self.proc.returncode is not None:
            return
        if self._handshake:
            self._handshake.kill_sandbox()
            self.wait(_HANDSHAKE_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


class _Handshake(contextlib.AbstractContextManager):
    """bwrap reports the sandbox's init on --info-fd and waits on a block fd until released: the
    parent takes a pidfd on the init meanwhile (so the kill at the end can never hit a recycled
    pid) and, as root, writes the id maps (--userns-block-fd), so that uid 65534 inside is uid
    65534 outside, not root."""

    def __init__(self, found: Isolation) -> None:
        self._info_r, info_w = os.pipe()
        block_r, self._block_w = os.pipe()
        self.child_fds: tuple[int, ...] = (info_w, block_r)
        self._map_ids = found.parent_maps_ids
        self._pidfd: int | None = None

    def complete(self) -> None:
        for fd in self.child_fds:  # the child holds its own copies now
            os.close(fd)
        self.child_fds = ()
        pid = json.loads(_read_all(self._info_r, _HANDSHAKE_S))["child-pid"]
        self._pidfd = os.pidfd_open(pid)  # alive: it waits for the release below
        if self._map_ids:
            # 0 stays mapped to root so bwrap can mount before the launcher drops to 65534.
            mapping = f"0 0 1\n{SANDBOX_ID} {SANDBOX_ID} 1\n"
            for name in ("uid_map", "gid_map"):
                Path(f"/proc/{pid}/{name}").write_text(mapping)
        os.write(self._block_w, b"1")

    def kill_sandbox(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def __exit__(self, *exc_info) -> None:
        for fd in (self._info_r, self._block_w, self._pidfd, *self.child_fds):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _bwrap_command(found: Isolation, handshake: _Handshake) -> list[str]:
    command = [found.bwrap or "bwrap", "--unshare-all", "--unshare-user", "--die-with-parent",
               "--new-session", "--hostname", "sandbox", "--cap-drop", "ALL",
               "--info-fd", str(handshake.child_fds[0])]
    if found.parent_maps_ids:
        command += ["--userns-block-fd", str(handshake.child_fds[1]),
                    *(arg for cap in ("SETUID", "SETGID", "SYS_RESOURCE")
                      for arg in ("--cap-add", f"CAP_{cap}"))]  # for the launcher's drop only
    else:
        command += ["--block-fd", str(handshake.child_fds[1]), "--disable-userns",
                    "--uid", str(SANDBOX_ID), "--gid", str(SANDBOX_ID)]
    return [*command, *_view(), "--proc", "/proc", "--dev", "/dev", "--size", str(_TMPFS_BYTES),
            "--perms", "1777", "--tmpfs", "/tmp", "--remount-ro", "/", "--chdir", "/tmp"]


@functools.cache
def _view() -> tuple[str, ...]:
    """bwrap arguments for the read-only filesystem: /usr and its links, the interpreter's prefix."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for root in _interpreter_roots():
        # Parents are created world-searchable: a prefix under /root must be reachable by 65534.
        for parent in reversed(Path(root).parents[:-1]):
            args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", root, root]
    return tuple(args)


def _interpreter_roots() -> list[str]:
    """Prefixes the interpreter needs (binary, stdlib, libpython) that /usr does not cover."""
    exe = Path(_interpreter())
    candidates = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix, exe.parent.parent)}
    outside = sorted(p for p in candidates if p != "/" and not _within(p, "/usr"))
    return [p for p in outside if not any(q != p and _within(p, q) for q in outside)]


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@functools.cache
def _interpreter() -> str:
    # The base interpreter, not a venv's: -I -S ignores site-packages, and the venv may not be shown.
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _rlimits(limits: SandboxLimits) -> dict[str, tuple[int, int]]:
    memory = limits.memory_mb * 1024 * 1024
    return {"RLIMIT_AS": (memory, memory), "RLIMIT_CPU": (limits.cpu_s, limits.cpu_s + 1),
            "RLIMIT_FSIZE": (_MAX_FILE_BYTES, _MAX_FILE_BYTES), "RLIMIT_CORE": (0, 0),
            "RLIMIT_NOFILE": (_MAX_OPEN_FILES, _MAX_OPEN_FILES),
            "RLIMIT_NPROC": (limits.max_processes, limits.max_processes)}


def _environment(home: str) -> dict[str, str]:
    # Rebuilt, never copied: the parent's environment may hold tokens and keys.
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home, "TMPDIR": home,
            "PYTHONDONTWRITEBYTECODE": "1"}


@contextlib.contextmanager
def _program_file(source: str):
    """The program text in an unnamed file, handed over as a descriptor: no path to find it by."""
    with tempfile.TemporaryFile() as f:
        f.write(source.encode("utf-8"))
        f.flush()
        f.seek(0)
        yield f.fileno()


def _read_all(fd: int, timeout_s: float) -> bytes:
    data, deadline = b"", time.monotonic() + timeout_s
    while True:
        if not select.select([fd], [], [], max(deadline - time.monotonic(), 0))[0]:
            raise OSError(f"bwrap did not report its sandbox within {timeout_s:.0f} s")
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


def _version(bwrap: str) -> str:
    try:
        done = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or "bwrap"
    except (OSError, subprocess.TimeoutExpired):
        return "bwrap"


def _status(returncode: int, timed_out: bool) -> SandboxStatus:
    if timed_out:
        return "timeout"
    if returncode == 0:
        return "ok"
    code = returncode if returncode > 0 else 128 - returncode  # a signal, as bwrap reports it
    if code == 128 + signal.SIGXCPU:
        return "timeout"
    if code == SETUP_FAILED or code > 128:
        return "error"
    return "failed"


def _read(handle: IO[bytes], limit: int) -> str:
    handle.seek(0)
    data = handle.read(limit + 1)
    text = data[:limit].decode("utf-8", errors="replace")
    return text + "\n[output truncated]" if len(data) > limit else text

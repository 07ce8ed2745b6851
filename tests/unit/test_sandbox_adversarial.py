"""Programs written to cheat the code scorer or escape its sandbox, run as root like CI.

Each one answers the same problem (add two numbers) and returns the right sum only if its attack
worked, so a working attack shows twice: as a pass, and as a change outside the sandbox. Every test
asserts both that the program is not scored a pass and that nothing outside the sandbox changed:
a canary file and directory in the test's tmp dir, a host listener on 0.0.0.0, a secret in the
parent's environment, paths under the host's /etc, /tmp and the interpreter prefix, and the
process table (no process of a run may outlive it).
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

from lorasafe.scoring.code import build_programs, run_tests
from lorasafe.scoring.sandbox import SANDBOX_ID, SandboxLimits, isolation

pytestmark = pytest.mark.skipif(isolation().kind != "bwrap" and not os.environ.get("CI"),
                                reason=f"no kernel sandbox here: {isolation().detail}")

ADD = {"prompt": 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n',
       "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
       "entry_point": "add"}
LIMITS = SandboxLimits(timeout_s=4, cpu_s=4, memory_mb=256)
SECRET = "LORASAFE_CANARY_SECRET"
# An attack that does not define add itself sets ESCAPED = True when it believes it worked, and
# this answer then turns right.
PAYOFF = "\ndef add(a, b):\n    return a + b if ESCAPED else 0\n"


class World:
    """What lies outside the sandbox, recorded before a run and checked after it."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir = tmp_path / "outside"
        self.dir.mkdir()
        self.canary = self.dir / "canary.txt"
        self.canary.write_text("untouched")
        self.stat = self.canary.stat()
        self.secret = uuid.uuid4().hex
        monkeypatch.setenv(SECRET, self.secret)
        self.name = f"lorasafe-pwned-{uuid.uuid4().hex[:8]}"
        self.listener = socket.create_server(("0.0.0.0", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.processes = _sandbox_processes()
        self.stdlib_os = Path(os.__file__).read_bytes()

    def program(self, attack: str) -> str:
        for token, value in (("CANARY", str(self.canary)), ("DIR", str(self.dir)), ("PORT", self.port),
                             ("HOSTPID", os.getpid()), ("SECRET", SECRET), ("NAME", self.name),
                             ("STDLIB_OS", os.__file__)):
            attack = attack.replace(f"@{token}@", repr(value))
        return attack if "def add(" in attack else attack + PAYOFF

    def assert_untouched(self) -> None:
        assert self.canary.read_text() == "untouched"
        assert self.canary.stat().st_mtime_ns == self.stat.st_mtime_ns
        assert os.listdir(self.dir) == ["canary.txt"]
        for root in ("/etc", tempfile.gettempdir(), "/usr", str(Path(os.__file__).parent)):
            assert not Path(root, self.name).exists()
        assert Path(os.__file__).read_bytes() == self.stdlib_os
        with pytest.raises(socket.timeout):
            self.listener.accept()  # a connection that got through would wait in the backlog
        assert _sandbox_processes() - self.processes == set()

    def close(self) -> None:
        self.listener.close()


def _sandbox_processes() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            uid = int((entry / "status").read_text().split("\nUid:")[1].split()[0])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if uid == SANDBOX_ID or b"lorasafe sandbox: setup failed" in cmdline:
            pids.add(int(entry.name))
    return pids


@pytest.fixture
def world(tmp_path, monkeypatch):
    world = World(tmp_path, monkeypatch)
    yield world
    world.close()


def attempt(world: World, attack: str, limits: SandboxLimits = LIMITS):
    """Score the attack; it must not pass, and nothing outside may change."""
    ran = run_tests(build_programs(world.program(attack), ADD), limits)
    assert ran.status in ("failed", "error", "timeout"), ran
    assert ran.reason
    leaked = ran.reason + ran.solution.stdout + ran.solution.stderr + ran.tests.stdout + ran.tests.stderr
    assert world.secret not in leaked
    world.assert_untouched()
    return ran


# ---------------------------------------------------------------- forged passes

FORGED = {
    "os._exit(0) during the call": "import os\nESCAPED = False\ndef add(a, b):\n    os._exit(0)",
    "os._exit(0) on import": "import os\nESCAPED = False\nos._exit(0)",
    "sys.exit(0) during the call": "import sys\nESCAPED = False\ndef add(a, b):\n    sys.exit(0)",
    "raise SystemExit on import": "ESCAPED = False\nraise SystemExit(0)",
    "atexit hook exits 0": "import atexit, os\natexit.register(os._exit, 0)\nESCAPED = False",
    "trace hook exits 0": ("import os, sys, threading\nESCAPED = False\n"
                           "def hook(frame, event, arg):\n    if event == 'return':\n        os._exit(0)\n"
                           "    return hook\nsys.settrace(hook)\nthreading.settrace(hook)"),
    "__del__ exits 0 at shutdown": ("import os\nESCAPED = False\nclass Exit:\n"
                                    "    def __del__(self):\n        os._exit(0)\nkeep = Exit()"),
    "patched sys.exit": "import os, sys\nsys.exit = lambda *a: os._exit(0)\nESCAPED = False",
    "patched traceback.print_exception": ("import os, traceback\nESCAPED = False\n"
                                          "traceback.print_exception = lambda *a, **k: os._exit(0)"),
    "patched sys.excepthook": "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\nESCAPED = False",
    "timer signal exits 0": ("import os, signal, time\nsignal.signal(signal.SIGALRM, lambda *a: os._exit(0))\n"
                             "signal.setitimer(signal.ITIMER_REAL, 0.05)\n"
                             "def add(a, b):\n    time.sleep(0.2)\n    return 0"),
}


@pytest.mark.parametrize("attack", list(FORGED.values()), ids=list(FORGED))
def test_a_forged_exit_is_not_a_pass(world, attack):
    attempt(world, attack)


EQUAL_TO_EVERYTHING = {
    "object equal to everything": "class Any:\n    def __eq__(self, other):\n        return True\n",
    "int subclass equal to everything": "class Any(int):\n    def __eq__(self, other):\n        return True\n",
    "list subclass equal to everything": "class Any(list):\n    def __eq__(self, other):\n        return True\n",
}


@pytest.mark.parametrize("cls", list(EQUAL_TO_EVERYTHING.values()), ids=list(EQUAL_TO_EVERYTHING))
def test_a_value_equal_to_everything_is_not_a_pass(world, cls):
    ran = attempt(world, cls + "def add(a, b):\n    return Any()")
    assert "only plain built-in values are compared" in ran.reason and "solution.Any" in ran.reason


def test_reading_the_tests_from_memory_finds_nothing(world):
    # In a single-process harness the caller's frame is check() and its source holds the answer.
    attack = ("import gc, linecache, sys\nfound = []\n"
              "def add(a, b):\n    frame = sys._getframe(1)\n    while frame:\n"
              "        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)\n"
              "        if '==' in line:\n            return eval(line.split('==')[1])\n"
              "        frame = frame.f_back\n"
              "    for obj in gc.get_objects():\n        if isinstance(obj, str) and 'def check' in obj:\n"
              "            found.append(obj)\n    print('found', len(found))\n    return 0")
    ran = attempt(world, attack)
    assert ran.status == "failed" and ran.solution.stdout.split()[-1] == "0"


def test_a_forged_verdict_on_every_descriptor_is_not_a_pass(world):
    attack = ("import json, os\nESCAPED = False\n"
              "forged = json.dumps({'status': 'passed', 'reason': '', 'calls': 1, 'gone': False}).encode()\n"
              "def spray():\n    for fd in range(3, 64):\n        try:\n            os.write(fd, forged + b'\\n')\n"
              "        except OSError:\n            pass\n"
              "    for path in __import__('glob').glob('/proc/*/fd/*'):\n        try:\n"
              "            with open(path, 'wb') as f:\n                f.write(forged)\n"
              "        except OSError:\n            pass\nspray()\nos._exit(0)")
    attempt(world, attack)


# ---------------------------------------------------------------- privilege, files, environment

ESCAPES = {
    "become root with setuid": "import os\ntry:\n    os.setuid(0)\n    ESCAPED = True\nexcept OSError:\n    ESCAPED = False",
    "become root with ctypes then write /etc": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nESCAPED = False\n"
        "if libc.setresuid(0, 0, 0) == 0:\n    try:\n"
        "        open('/etc/' + @NAME@, 'w').write('x')\n        ESCAPED = True\n    except OSError:\n        pass"),
    "write the host canary": "try:\n    open(@CANARY@, 'w').write('pwned')\n    ESCAPED = True\nexcept OSError:\n    ESCAPED = False",
    "delete the host canary": "import os\ntry:\n    os.remove(@CANARY@)\n    ESCAPED = True\nexcept OSError:\n    ESCAPED = False",
    "create a file beside the canary": (
        "import os\ntry:\n    os.close(os.open(@DIR@ + '/new', os.O_CREAT | os.O_WRONLY))\n    ESCAPED = True\n"
        "except OSError:\n    ESCAPED = False"),
    "symlink from /tmp to the canary": (
        "import os\nos.symlink(@CANARY@, '/tmp/link')\ntry:\n    open('/tmp/link', 'w').write('pwned')\n"
        "    ESCAPED = True\nexcept OSError:\n    ESCAPED = False"),
    "write /etc": "try:\n    open('/etc/' + @NAME@, 'w').write('x')\n    ESCAPED = True\nexcept OSError:\n    ESCAPED = False",
    "overwrite the stdlib": (
        "try:\n    open(@STDLIB_OS@, 'a').write('# pwned')\n    ESCAPED = True\nexcept OSError:\n    ESCAPED = False"),
    "write under /usr": "try:\n    open('/usr/' + @NAME@, 'w').write('x')\n    ESCAPED = True\nexcept OSError:\n    ESCAPED = False",
    "read the secret from the environment": "import os\nESCAPED = @SECRET@ in os.environ",
    "read the secret from /proc/*/environ": (
        "import glob\nESCAPED = False\nfor path in glob.glob('/proc/*/environ') + ['/proc/1/environ']:\n    try:\n"
        "        ESCAPED |= @SECRET@.encode() in open(path, 'rb').read()\n    except OSError:\n        pass"),
    "see the parent in /proc": "import os\nESCAPED = os.path.exists(f'/proc/{@HOSTPID@}/cmdline')",
    "kill every process it can signal": "import os, signal\nESCAPED = False\nos.kill(-1, signal.SIGKILL)",
    "read the host's files through /proc/1/root": (
        "try:\n    ESCAPED = open('/proc/1/root' + @CANARY@).read() == 'untouched'\nexcept OSError:\n    ESCAPED = False"),
}


@pytest.mark.parametrize("attack", list(ESCAPES.values()), ids=list(ESCAPES))
def test_privilege_file_and_environment_escapes_fail(world, attack):
    attempt(world, attack)


# ---------------------------------------------------------------- namespaces and network

NAMESPACES = {
    "setns into the init's network namespace": (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nfd = os.open('/proc/1/ns/net', os.O_RDONLY)\n"
        "ESCAPED = libc.setns(fd, 0) == 0"),
    "unshare a user namespace": "import ctypes\nESCAPED = ctypes.CDLL(None).unshare(0x10000000) == 0",
    "unshare -r and nsenter": (
        "import subprocess\nESCAPED = any(subprocess.run(cmd, capture_output=True).returncode == 0 for cmd in "
        "(['unshare', '-r', 'true'], ['nsenter', '-t', '1', '-a', 'true'], ['unshare', '-n', 'true']))"),
    "mount a tmpfs": "import ctypes\nESCAPED = ctypes.CDLL(None).mount(b'x', b'/tmp', b'tmpfs', 0, None) == 0",
    "connect to the host listener": (
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', @PORT@), timeout=1).sendall(b'x')\n"
        "    ESCAPED = True\nexcept OSError:\n    ESCAPED = False"),
}


@pytest.mark.parametrize("attack", list(NAMESPACES.values()), ids=list(NAMESPACES))
def test_namespace_and_network_escapes_fail(world, attack):
    attempt(world, attack)


def test_the_host_address_is_unreachable_too(world):
    host = socket.gethostbyname(socket.gethostname())
    attack = (f"import socket\ntry:\n    socket.create_connection(({host!r}, @PORT@), timeout=1)\n"
              "    ESCAPED = True\nexcept OSError:\n    ESCAPED = False")
    attempt(world, attack)


# ---------------------------------------------------------------- bombs, floods, import tricks

def test_fork_bomb_is_bounded_and_leaves_nothing(world):
    attack = ("import os, time\nESCAPED = False\nborn = 0\nwhile born < 10000:\n    try:\n"
              "        if os.fork() == 0:\n            time.sleep(60)\n        born += 1\n"
              "    except OSError:\n        break\nprint('born', born)")
    ran = attempt(world, attack)
    assert int(ran.solution.stdout.split()[-1]) < LIMITS.max_processes


def test_thread_bomb_is_bounded(world):
    attack = ("import threading, time\nESCAPED = False\nn = 0\ntry:\n    while n < 10000:\n"
              "        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n        n += 1\n"
              "except RuntimeError:\n    print('threads', n)")
    ran = attempt(world, attack)
    assert int(ran.solution.stdout.split()[-1]) < LIMITS.max_processes


def test_memory_bomb_is_refused(world):
    ran = attempt(world, "ESCAPED = False\nhog = bytearray(8 * 1024 ** 3)")
    assert "MemoryError" in ran.solution.stderr


def test_filling_the_private_tmp_is_capped(world):
    attack = ("ESCAPED = False\ntry:\n    for i in range(1000):\n        open(f'/tmp/fill{i}', 'wb').write(bytes(8 << 20))\n"
              "except OSError as exc:\n    print('stopped', i, exc.errno)")
    ran = attempt(world, attack)
    assert int(ran.solution.stdout.split()[1]) < 10  # 64 MiB tmpfs


def test_output_flood_is_capped(world):
    ran = attempt(world, "import sys\nESCAPED = False\nwhile True:\n    sys.stdout.write('x' * 1_000_000)")
    assert len(ran.solution.stdout) <= LIMITS.max_output_bytes + 100


IMPORT_TRICKS = {
    "drop import hooks, then run a shell on the canary": (
        "import sys\nsys.meta_path[:] = [h for h in sys.meta_path if 'Blocker' not in repr(h)]\n"
        "import subprocess\nESCAPED = subprocess.run(['sh', '-c', 'echo pwned >> ' + @CANARY@]).returncode == 0"),
    "ctypes system() on the canary": (
        "import ctypes\nESCAPED = ctypes.CDLL(None).system(('echo pwned >> ' + @CANARY@).encode()) == 0"),
    "recover the real open through __globals__": (
        "import builtins, io\nreal = getattr(builtins.open, '__globals__', {}).get('real_open', io.open)\n"
        "try:\n    real(@CANARY@, 'w').write('pwned')\n    ESCAPED = True\nexcept OSError:\n    ESCAPED = False"),
}


@pytest.mark.parametrize("attack", list(IMPORT_TRICKS.values()), ids=list(IMPORT_TRICKS))
def test_import_tricks_reach_nothing(world, attack):
    attempt(world, attack)


def test_the_attacks_would_pass_if_they_worked(world):
    # The PAYOFF convention is live: the same answer with ESCAPED = True is scored a pass.
    ran = run_tests(build_programs(world.program("ESCAPED = True"), ADD), LIMITS)
    assert ran.status == "passed", ran

"""The sandbox keeps untrusted code from looping, forking, eating memory, writing the parent's
files, reading its secrets or reaching the network; and still runs ordinary programs."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from lorasafe.scoring.sandbox import SandboxLimits, isolation, run

FAST = SandboxLimits(timeout_s=5, cpu_s=5)


def sandbox_processes() -> list[int]:
    """Live processes whose cwd is (or was) a sandbox directory: strays a run left behind."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if "lorasafe-sandbox-" in cwd:
                pids.append(int(entry.name))
    return pids


def test_normal_program_passes_and_can_use_its_directory():
    program = "open('notes.txt', 'w').write('kept')\nprint(open('notes.txt').read(), 6 * 7)"
    result = run(program, FAST)
    assert (result.status, result.returncode) == ("passed", 0)
    assert result.stdout == "kept 42\n" and result.stderr == ""


def test_failing_assert_fails():
    result = run("assert 1 + 1 == 3, 'arithmetic'", FAST)
    assert result.status == "failed" and result.returncode == 1
    assert "AssertionError: arithmetic" in result.stderr


def test_temp_dir_is_cwd_and_is_removed_afterwards():
    result = run("import os; print(os.getcwd()); print(os.environ['HOME'])", FAST)
    cwd, home = result.stdout.split()
    assert result.status == "passed" and cwd == home
    assert Path(cwd).name.startswith("lorasafe-sandbox-")
    assert Path(cwd).parent == Path(tempfile.gettempdir())
    assert not Path(cwd).exists()


def test_infinite_loop_times_out_on_the_wall_clock():
    result = run("while True:\n    pass", SandboxLimits(timeout_s=1, cpu_s=30))
    assert result.status == "timeout" and result.wall_s < 5
    assert sandbox_processes() == []


def test_cpu_limit_ends_a_busy_loop():
    result = run("while True:\n    pass", SandboxLimits(timeout_s=20, cpu_s=1))
    assert result.status == "timeout" and result.wall_s < 15


def test_fork_bomb_cannot_fork_and_leaves_no_process():
    # Bounded (at most 2**8 processes) so that a broken guard fails this test rather than
    # freezing the machine; each child would then sleep and be found as a stray.
    bomb = "import os, time\nfor _ in range(8):\n    os.fork()\ntime.sleep(60)"
    result = run(bomb, FAST)
    assert result.status == "error" and result.wall_s < 4
    assert "os.fork is not allowed" in result.stderr
    assert sandbox_processes() == []


@pytest.mark.parametrize("spawn", [
    "import subprocess; subprocess.run(['echo', 'ESCAPED'])",
    "import os; os.system('echo ESCAPED')",
    "import os; os.posix_spawn('/bin/echo', ['echo', 'ESCAPED'], {})",
    "import os; os.execv('/bin/echo', ['echo', 'ESCAPED'])",
    "import multiprocessing; multiprocessing.Process(target=print, args=('ESCAPED',)).start()",
])
def test_other_ways_to_start_a_process_are_refused(spawn):
    result = run(spawn, FAST)
    assert result.status == "error" and "ESCAPED" not in result.stdout
    assert "lorasafe sandbox" in result.stderr


def test_memory_bomb_fails_and_the_parent_is_fine():
    result = run("block = bytearray(4 * 1024 ** 3)\nprint('allocated')", FAST)
    assert result.status == "error" and "MemoryError" in result.stderr
    assert "allocated" not in result.stdout
    assert run("print('after')", FAST).stdout == "after\n"


@pytest.mark.parametrize("write", [
    "open(TARGET, 'w').write('escaped')",
    "import pathlib; pathlib.Path(TARGET).write_text('escaped')",
    "import os; os.close(os.open(TARGET, os.O_WRONLY | os.O_CREAT))",
    "import os; open('inside', 'w').write('escaped'); os.rename('inside', TARGET)",
    "import os; os.chdir('/'); open(TARGET.lstrip('/'), 'w').write('escaped')",
])
def test_writing_outside_its_directory_is_refused(tmp_path, write):
    target = tmp_path / "escaped.txt"
    result = run(f"TARGET = {str(target)!r}\n{write}", FAST)
    assert result.status == "error" and "outside the sandbox directory" in result.stderr
    assert not target.exists()


def test_deleting_a_parent_file_is_refused(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    result = run(f"import os; os.remove({str(victim)!r})", FAST)
    assert result.status == "error" and victim.read_text() == "keep me"


def test_environment_secrets_do_not_reach_the_child(monkeypatch):
    monkeypatch.setenv("LORASAFE_TEST_SECRET", "s3cr3t")
    snoop = ("import os, glob\nprint(dict(os.environ))\n"
             "for path in glob.glob('/proc/*/environ'):\n"
             "    try:\n        print(open(path, 'rb').read())\n    except OSError:\n        pass\n")
    result = run(snoop, FAST)
    assert result.status == "passed" and "LORASAFE_TEST_SECRET" not in result.stdout
    assert "s3cr3t" not in result.stdout + result.stderr


def test_network_connection_is_not_made():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        dial = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                "print('connected')")
        result = run(dial, FAST)
        assert result.status == "error" and "connected" not in result.stdout
        server.settimeout(0.2)
        with pytest.raises(socket.timeout):
            server.accept()  # a connection that got through would be waiting in the backlog


@pytest.mark.skipif(not isolation()[0], reason="no working `unshare`: the preamble is the only guard")
def test_network_namespace_holds_when_the_preamble_is_bypassed():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        # The C socket type sits at the root of the preamble's refusing subclass's `__mro__`.
        dial = ("import socket\ns = socket.socket.__mro__[-2]()\n"
                f"s.connect(('127.0.0.1', {server.getsockname()[1]}))\nprint('connected')")
        result = run(dial, FAST)
        assert result.status == "failed" and "Network is unreachable" in result.stderr
        server.settimeout(0.2)
        with pytest.raises(socket.timeout):
            server.accept()


def test_output_is_truncated():
    result = run("print('x' * 100000)", SandboxLimits(max_output_bytes=100))
    assert result.status == "passed" and result.stdout.startswith("x" * 100)
    assert len(result.stdout) < 200 and result.stdout.endswith("[output truncated]")


def test_main_block_runs_only_as_main():
    program = "if __name__ == '__main__':\n    print('main')"
    assert run(program, FAST).stdout == "main\n"
    assert run(program, FAST, as_main=False).stdout == ""


def test_limits_forbid_unknown_keys():
    with pytest.raises(ValidationError):
        SandboxLimits(timeout=3)

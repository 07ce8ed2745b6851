"""`lorasafe --mkl-dispatch`: MKL picks kernels by instruction set through a preloaded one-function library."""

import os
import shutil
import subprocess
import sys

import pytest

from lorasafe.errors import LorasafeError
from lorasafe.training import host_blas
from lorasafe.training.host_threads import wait_described

compiler = pytest.mark.skipif(not any(shutil.which(c) for c in ("cc", "gcc", "clang")), reason="no C compiler")

_RESTART = """
import ctypes, sys
print("start", flush=True)
from lorasafe.training.host_blas import active, restart_for
restart_for(sys.argv[1])
try:  # the symbol MKL asks, resolved as MKL resolves it: the preloaded library's comes first
    answer = ctypes.CDLL(None).mkl_serv_intel_cpu_true()
except AttributeError:
    answer = "absent"
print(active(), answer)
"""


def _run(mode: str, cache) -> list[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("LD_PRELOAD", None)
    out = subprocess.run([sys.executable, "-c", _RESTART, mode], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.splitlines()


@compiler
def test_isa_restarts_the_process_once_with_the_shim_answering_intel(tmp_path):
    lines = _run("isa", tmp_path)
    assert lines == ["start", "start", "isa 1"]  # one restart, not a loop
    assert (tmp_path / "lorasafe" / host_blas.SHIM_NAME).is_file()  # compiled once into the cache
    assert _run("vendor", tmp_path) == ["start", "vendor absent"]  # no restart, and nothing answers for MKL


def test_auto_applies_only_to_cpus_not_made_by_intel(monkeypatch):
    execs = []
    monkeypatch.setattr(os, "execve", lambda *a: execs.append(a))
    monkeypatch.setattr(host_blas, "shim_path", lambda: host_blas.Path("/cache/lorasafe/libshim.so"))
    monkeypatch.setattr(host_blas, "active", lambda: "vendor")
    monkeypatch.delenv(host_blas._RESTARTED, raising=False)
    monkeypatch.setattr(host_blas.sys, "platform", "linux")
    monkeypatch.setattr(host_blas.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(host_blas, "cpu_vendor", lambda: "GenuineIntel")
    host_blas.restart_for("auto")
    assert execs == []
    host_blas.restart_for("vendor")
    assert execs == []
    monkeypatch.setattr(host_blas, "cpu_vendor", lambda: "AuthenticAMD")
    host_blas.restart_for("auto")
    (_, _, env), = execs
    assert env["LD_PRELOAD"].split(":")[0] == "/cache/lorasafe/libshim.so" and env[host_blas._RESTARTED] == "1"


def test_without_a_compiler_isa_says_how_and_auto_goes_on(monkeypatch):
    monkeypatch.setattr(host_blas, "shim_path", lambda: None)
    monkeypatch.setattr(host_blas, "active", lambda: "vendor")
    monkeypatch.setattr(host_blas, "applies", lambda: True)
    monkeypatch.delenv(host_blas._RESTARTED, raising=False)
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("restarted"))
    with pytest.raises(LorasafeError, match="apt-get install gcc"):
        host_blas.restart_for("isa")
    host_blas.restart_for("auto")  # the command runs on, with MKL's own rule
    with pytest.raises(LorasafeError, match="choose one of auto, isa, vendor"):
        host_blas.restart_for("fast")


def test_dispatch_defaults_to_auto_for_the_command_and_to_vendor_for_mini_build_and_in_process_callers(monkeypatch):
    from typer.testing import CliRunner

    import lorasafe.cli as cli

    chosen = []
    monkeypatch.setattr(host_blas, "dispatch_env", lambda mode, env: chosen.append(mode) or dict(env))
    monkeypatch.delenv("LORASAFE_MKL_DISPATCH", raising=False)
    assert CliRunner().invoke(cli.app, ["mini", "--help"]).exit_code == 0
    assert CliRunner().invoke(cli.app, ["--mkl-dispatch", "isa", "mini", "--help"]).exit_code == 0
    assert CliRunner().invoke(cli.app, ["mini", "--help"], env={"LORASAFE_MKL_DISPATCH": "auto"}).exit_code == 0
    assert chosen == ["vendor", "isa", "auto"]
    # the `lorasafe` command (cli.main) gives typer its defaults (below the options and their environment
    # variables, not exported to the processes it starts): auto dispatch and malloc, and PASSIVE OpenMP threads
    # after a short libgomp spin, except for `mini build`, one process that has the cores to itself and must
    # rebuild the shipped model bit for bit (MKL's own rule and glibc as it comes, the path measured to); a wait
    # policy the user set stays as it is, with no spin count added, and a spin count of their own is kept
    given_defaults = []
    monkeypatch.setattr(cli, "app", lambda default_map: given_defaults.append(default_map))
    monkeypatch.setattr(cli, "_AS_COMMAND", False)  # main sets it; restored after, so no later test restarts
    for argv, given, dispatch, wait in (
            (["data", "list"], {}, "auto", ("PASSIVE", "300")),
            (["--malloc", "system", "mini", "build"], {}, "vendor", (None, None)),
            (["mini", "list"], {}, "auto", ("PASSIVE", "300")),
            (["data", "list"], {"OMP_WAIT_POLICY": "ACTIVE"}, "auto", ("ACTIVE", None)),
            (["data", "list"], {"GOMP_SPINCOUNT": "5"}, "auto", ("PASSIVE", "5")),
            (["data", "list"], {"WORLD_SIZE": "2"}, "auto", ("PASSIVE", None))):  # launched as several: no spin
        unset = ("LORASAFE_MKL_DISPATCH", "LORASAFE_MALLOC", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "WORLD_SIZE")
        environ = {k: v for k, v in os.environ.items() if k not in unset} | given
        monkeypatch.setattr(os, "environ", environ)
        monkeypatch.setattr(sys, "argv", ["lorasafe", *argv])
        cli.main()
        malloc = "system" if "build" in argv else "auto"
        assert given_defaults.pop() == {"mkl_dispatch": dispatch, "malloc": malloc}
        assert (environ.get("OMP_WAIT_POLICY"), environ.get("GOMP_SPINCOUNT")) == wait
        assert "LORASAFE_MKL_DISPATCH" not in environ and "LORASAFE_MALLOC" not in environ
        assert wait_described(environ) == {("PASSIVE", "300"): "PASSIVE, GOMP_SPINCOUNT=300",
                                           (None, None): "the runtime's default", ("ACTIVE", None): "ACTIVE",
                                           ("PASSIVE", "5"): "PASSIVE, GOMP_SPINCOUNT=5",
                                           ("PASSIVE", None): "PASSIVE"}[wait]


def test_the_command_restarts_once_for_the_dispatch_and_the_malloc_together_and_in_process_callers_never(monkeypatch):
    from typer.testing import CliRunner

    import lorasafe.cli as cli
    import lorasafe.training.host_memory as hm

    restarts = []
    monkeypatch.setattr(hm, "restart", restarts.append)
    monkeypatch.setattr(hm, "_glibc", lambda: object())
    monkeypatch.setattr(hm, "_gpu_host", lambda: False)
    monkeypatch.setattr(hm, "allocator", lambda: "system")
    monkeypatch.setattr(host_blas, "applies", lambda: True)
    monkeypatch.setattr(host_blas, "active", lambda: "vendor")
    monkeypatch.setattr(host_blas, "shim_path", lambda: host_blas.Path("/cache/lorasafe/libshim.so"))
    unset = ("LORASAFE_MKL_DISPATCH", "LORASAFE_MALLOC", "GLIBC_TUNABLES", "LD_PRELOAD", host_blas._RESTARTED)
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    monkeypatch.setattr(os, "environ", environ)
    args = ["--mkl-dispatch", "auto", "--malloc", "auto", "data", "list"]
    assert CliRunner().invoke(cli.app, args).exit_code == 0
    assert restarts == []  # in-process: the caller's interpreter is never replaced
    monkeypatch.setattr(cli, "_AS_COMMAND", True)
    assert CliRunner().invoke(cli.app, args).exit_code == 0
    (env,) = restarts  # one environment for both: the shim preloaded and glibc's caches off
    assert env["LD_PRELOAD"] == "/cache/lorasafe/libshim.so" and env[host_blas._RESTARTED] == "1"
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0"
    # in the restarted process (the shim loaded, the tunables set) nothing restarts again
    monkeypatch.setattr(host_blas, "active", lambda: "isa")
    monkeypatch.setattr(os, "environ", env)
    assert CliRunner().invoke(cli.app, args).exit_code == 0
    assert restarts[1] == env


def test_an_unwritable_cache_means_no_shim_not_a_failed_command(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # the cache would have to be a directory under a file
    assert host_blas.shim_path() is None

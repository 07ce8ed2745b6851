"""`training.host_memory: release` maps the blocks a training step allocates (glibc), so they go back to the
operating system when freed, and changes no number."""

import ctypes
import ctypes.util
import os

import pytest
import torch

from lorasafe.training.host_memory import MALLOCS, _mallopt, host_memory

glibc = pytest.mark.skipif(_mallopt() is None, reason="glibc only")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                                "uordblks", "fordblks", "keepcost")]


def _mapped_bytes() -> int:
    fn = ctypes.CDLL(None).mallinfo2
    fn.restype = _Mallinfo2
    return fn().hblkhd


def _mapped(nbytes: int, count: int = 64) -> bool:
    """Whether most of `count` fresh tensors of `nbytes` are served by mappings of their own (free chunks
    already in the heap serve a few whatever the threshold)."""
    before = _mapped_bytes()
    held = [torch.empty(nbytes, dtype=torch.uint8) for _ in range(count)]
    share = (_mapped_bytes() - before) / (nbytes * count)
    del held
    return share > 0.5


_CHECK = """
import sys
import torch
from tests.unit.test_host_memory import _mapped
from lorasafe.training.host_memory import host_memory
big = torch.empty(16 << 20, dtype=torch.uint8)
del big  # freeing a mapped block of up to 32 MiB raises glibc's threshold to its size
seen = []
if sys.argv[1] == "before":
    seen.append(_mapped(2 << 20))
else:
    with host_memory("release", "cpu") as applied:
        seen += [applied, _mapped(2 << 20)]
    seen.append(_mapped(2 << 20))
    for mode, device in (("keep", "cpu"), ("release", "cuda")):
        with host_memory(mode, device) as applied:
            seen += [applied, _mapped(2 << 20)]
print(seen)
"""


@glibc
def test_release_maps_blocks_of_a_mib_while_training_on_a_cpu():
    # Fresh interpreters, and the check before release in one of its own: glibc serves a block from free heap
    # chunks before it maps one whatever the threshold, so blocks freed earlier in the same process (a long
    # test process, or the check before) could serve these and the check would say nothing (seen once in 8).
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    seen = []
    for part in ("before", "release"):
        out = subprocess.run([sys.executable, "-c", _CHECK, part], cwd=root, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        seen.append(out.stdout.split("\n")[-2])
    # before: 2 MiB blocks come from the heap (a training step's starting state); inside release: mapped;
    # after: from the heap again (generation); keep, or a GPU run: untouched
    assert seen == [str([False]), str(["release", True, False, "keep", False, "keep", False])]


def test_release_elsewhere_than_glibc_says_it_kept(monkeypatch):
    import lorasafe.training.host_memory as hm

    monkeypatch.setattr(hm, "_mallopt", lambda: None)
    with host_memory("release", "cpu") as applied:
        assert applied == "keep (release needs glibc)"


def test_host_memory_is_not_part_of_a_runs_identity():
    from lorasafe.config.loader import config_hash
    from lorasafe.config.schema import ExperimentConfig, TrainingConfig

    assert "host_memory" not in TrainingConfig().model_dump()
    assert TrainingConfig(host_memory="release").model_dump()["host_memory"] == "release"
    assert config_hash(ExperimentConfig(training={"host_memory": "release"})) == config_hash(ExperimentConfig())


# `lorasafe --malloc tcmalloc|jemalloc`: the process restarts once with the library preloaded.
def _installed(name: str):
    lib, package = MALLOCS[name]
    missing = ctypes.util.find_library(lib) is None
    return pytest.param(name, marks=pytest.mark.skipif(
        missing, reason=f"{package} is not installed (`make install` installs it as root)"))


_RESTART = """
import sys
print("start", flush=True)
from lorasafe.training.host_memory import allocator, host_memory, restart_with
restart_with(sys.argv[1])
with host_memory("release", "cpu") as applied:
    print(allocator(), "|", applied)
"""


def _restart(name: str) -> list[str]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _RESTART, name], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.splitlines()


@pytest.mark.parametrize("name", [_installed("tcmalloc"), _installed("jemalloc")])
def test_malloc_option_restarts_the_process_once_on_that_malloc(name):
    # "start" twice: one restart, not a loop; release is glibc's and says it was not applied under another malloc
    assert _restart(name) == ["start", "start", f"{name} | keep (release needs glibc's malloc, not {name})"]
    released = "release" if _mallopt() else "keep (release needs glibc)"
    assert _restart("system") == ["start", f"system | {released}"]


def test_malloc_without_its_library_says_how_to_install_it(monkeypatch):
    from lorasafe.errors import LorasafeError
    from lorasafe.training.host_memory import preload_env

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(LorasafeError, match="apt-get install libtcmalloc-minimal4"):
        preload_env("tcmalloc", {})
    with pytest.raises(LorasafeError, match="apt-get install libjemalloc2"):
        preload_env("jemalloc", {})
    with pytest.raises(LorasafeError, match="choose one of: auto, system, tcmalloc, jemalloc"):
        preload_env("mimalloc", {})
    assert preload_env("system", {"A": "1"}) == {"A": "1"}


def test_the_cli_option_and_its_environment_variable_choose_the_malloc(monkeypatch):
    from typer.testing import CliRunner

    import lorasafe.training.host_memory as hm
    from lorasafe.cli import app

    chosen = []
    monkeypatch.setattr(hm, "malloc_env", lambda name, env: chosen.append(name) or dict(env))
    runner = CliRunner()
    assert runner.invoke(app, ["--malloc", "tcmalloc", "data", "list"]).exit_code == 0
    assert runner.invoke(app, ["data", "list"], env={"LORASAFE_MALLOC": "tcmalloc"}).exit_code == 0
    assert runner.invoke(app, ["data", "list"], env={"LORASAFE_MALLOC": None}).exit_code == 0
    assert chosen == ["tcmalloc", "tcmalloc", "system"]


# `--malloc auto` (the command's default): glibc's per-thread cache and fastbins off, set as the process starts.
_SMALL_FREES = """
import ctypes, sys
print("start", flush=True)
import lorasafe.training.host_memory as hm
hm._gpu_host = lambda: False  # what auto does on this host, were it a GPU one too
hm.restart_with(sys.argv[1])
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
libc.mallinfo2.restype = Mallinfo2
libc.malloc_usable_size.restype, libc.malloc_usable_size.argtypes = ctypes.c_size_t, [ctypes.c_void_p]
held = [libc.malloc(64) for _ in range(100)]
chunk = libc.malloc_usable_size(held[0]) + 8  # with its header
before = libc.mallinfo2().uordblks
for p in held:
    libc.free(p)
after = libc.mallinfo2()
print(hm.malloc_described(), "|", before - after.uordblks >= 100 * chunk, after.fsmblks == 0)
"""


@glibc
@pytest.mark.skipif("malloc" in os.environ.get("LD_PRELOAD", ""), reason="another malloc is preloaded")
def test_auto_restarts_once_with_glibcs_small_block_caches_off():
    import subprocess
    import sys
    from pathlib import Path

    def run(name: str, **env: str) -> list[str]:
        environ = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | env
        out = subprocess.run([sys.executable, "-c", _SMALL_FREES, name], cwd=Path(__file__).resolve().parents[2],
                             capture_output=True, text=True, timeout=120, env=environ)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.splitlines()

    # auto: one restart; then every freed small block is free at once (none held in the thread's cache, which
    # malloc counts as in use, nor in a fastbin). system: some are held (what auto changes).
    tuned = "system (glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0)"
    assert run("auto") == ["start", "start", f"{tuned} | True True"]
    assert run("system") == ["start", "system | False False"]
    # a tunable the user set stays theirs, the other is added; when both are named there is no restart
    assert run("auto", GLIBC_TUNABLES="glibc.malloc.mxfast=0") == \
        ["start", "start", "system (glibc.malloc.mxfast=0:glibc.malloc.tcache_count=0) | True True"]
    assert run("auto", GLIBC_TUNABLES="glibc.malloc.tcache_count=7:glibc.malloc.mxfast=0") == \
        ["start", "system (glibc.malloc.tcache_count=7:glibc.malloc.mxfast=0) | False True"]


def test_auto_elsewhere_than_glibc_on_another_malloc_or_a_gpu_host_changes_nothing(monkeypatch):
    import lorasafe.training.host_memory as hm

    monkeypatch.setattr(hm, "_glibc", lambda: None)
    assert hm.malloc_env("auto", {"A": "1"}) == {"A": "1"}
    monkeypatch.setattr(hm, "_glibc", lambda: object())
    monkeypatch.setattr(hm, "_gpu_host", lambda: False)
    assert "GLIBC_TUNABLES" in hm.malloc_env("auto", {"A": "1"})  # what the rest keeps as it is
    monkeypatch.setattr(hm, "_gpu_host", lambda: True)  # a GPU host: its heap is not what limits training
    assert hm.malloc_env("auto", {"A": "1"}) == {"A": "1"}
    monkeypatch.setattr(hm, "_gpu_host", lambda: False)
    # a malloc preloaded by the user, found by name or by its library in the process: left as it is
    preloaded = {"LD_PRELOAD": "/opt/lib/libmimalloc.so.2"}
    assert hm.malloc_env("auto", preloaded) == preloaded
    monkeypatch.setattr(hm, "allocator", lambda: "jemalloc")
    assert hm.malloc_env("auto", {"A": "1"}) == {"A": "1"}
    assert hm.tuned_env({"GLIBC_TUNABLES": "glibc.rtld.x=1"})["GLIBC_TUNABLES"] == \
        "glibc.rtld.x=1:glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0"


# `training.host_memory: auto`: a trim of glibc's heap before the input embeddings' gradient, where it is large.
class _Model(torch.nn.Module):
    """What host_memory asks of the trained model: its input embeddings."""

    def __init__(self, embeddings):
        super().__init__()
        self.embeddings = embeddings

    def get_input_embeddings(self):
        return self.embeddings


def _step(embeddings, order):
    head = torch.nn.Linear(embeddings.embedding_dim, 3)
    head.weight.register_hook(lambda g: order.append("head"))
    x = embeddings(torch.tensor([[1, 2, 3], [4, 5, 6]]))
    head(x).square().sum().backward()
    return embeddings.weight.grad.clone() if embeddings.weight.grad is not None else None


@pytest.mark.parametrize("vocab,frozen,device,compiled,applied", [
    (1 << 16, False, "cpu", False, "trim before the input embeddings' gradient"),  # 65,536 x 128 fp32 = 32 MiB
    ((1 << 16) - 1, False, "cpu", False, "keep"),  # just under: glibc may serve it from the heap
    (1 << 16, True, "cpu", False, "keep"),  # LoRA: the embeddings are frozen, no gradient comes
    (1 << 16, False, "cuda", False, "keep"),
    (1 << 16, False, "cpu", True, "keep (trimming is not done under compile)"),
])
def test_auto_trims_once_per_backward_after_the_decoder_and_only_for_a_large_embedding_gradient(
        monkeypatch, vocab, frozen, device, compiled, applied):
    import lorasafe.training.host_memory as hm

    order = []
    monkeypatch.setattr(hm, "allocator", lambda: "system")
    monkeypatch.setattr(hm, "_malloc_trim", lambda: lambda pad: order.append("trim") or 1)
    torch.manual_seed(0)
    embeddings = torch.nn.Embedding(vocab, 128).requires_grad_(not frozen)
    torch.manual_seed(1)
    plain = _step(embeddings, [])
    embeddings.zero_grad(set_to_none=True)
    with host_memory("auto", device, _Model(embeddings), compiled) as said:
        torch.manual_seed(1)
        grads = [_step(embeddings, order)]
        embeddings.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        grads.append(_step(embeddings, order))
    embeddings.zero_grad(set_to_none=True)
    _step(embeddings, order)  # after: the hook is gone
    assert said == applied
    trims = applied.startswith("trim")
    assert order == (["head", "trim", "head", "trim", "head"] if trims else ["head"] * 3)
    assert all(g is None if frozen else torch.equal(g, plain) for g in grads)  # the gradient is untouched


def test_auto_keeps_on_another_malloc_or_elsewhere_than_glibc(monkeypatch):
    import lorasafe.training.host_memory as hm

    embeddings = torch.nn.Embedding(1 << 16, 128)
    monkeypatch.setattr(hm, "allocator", lambda: "jemalloc")
    with host_memory("auto", "cpu", _Model(embeddings)) as said:
        assert said == "keep (auto needs glibc's malloc, not jemalloc)"
    monkeypatch.setattr(hm, "allocator", lambda: "system")
    monkeypatch.setattr(hm, "_malloc_trim", lambda: None)
    with host_memory("auto", "cpu", _Model(embeddings)) as said:
        assert said == "keep (trimming needs glibc)"
    with host_memory("auto", "cpu", object()) as said:  # a model without input embeddings
        assert said == "keep"
    assert not embeddings._forward_hooks


@glibc
def test_malloc_trim_is_glibcs_and_runs():
    from lorasafe.training.host_memory import _malloc_trim

    assert _malloc_trim()(0) in (0, 1)

"""Saved activations: which tensors a training forward keeps for its backward, and which the backward recomputes.

Owns `saved_activations()`, the context the trainer runs each forward in (`training.saved_activations`).
Autograd keeps every tensor that a backward formula reads, and some of those are one element-wise op away
from tensors the same graph keeps anyway. `lean` (the default) stores a recipe for two kinds instead:

- the output of a SiLU, which SwiGLU's product keeps, while the SiLU's own backward keeps its input;
- a product whose two factors its own backward keeps (both need gradients): SwiGLU's `silu(gate) * up`,
  which the down projection keeps; RMSNorm's normalised `x * rsqrt(mean(x^2) + eps)`, which the product
  with its weight keeps; and, where that weight is trained (full fine-tuning), the norm's output, which the
  next projections keep.

The backward recomputes such a tensor when its first reader asks, from the factors its creator kept, and
drops it after its last reader (a norm's output has three: q, k and v); a view of a whole such tensor (a
linear layer reads its 3-D input as 2-D) is the view of the recomputed one. Only tensors never written in
place are recomputed (version 0), since their op's inputs give their value. The same kernel on the same
inputs gives the same bits, so gradients are bit-identical (tests/unit/test_activations.py holds them so on
a CPU in fp32 for Qwen2, Llama and Qwen3, LoRA and full fine-tuning; nothing of it has run on a GPU). What it
saves per decoder layer in full fine-tuning: 2 of SwiGLU's 4 intermediate-sized tensors and both RMSNorms'
normalised and output states (with LoRA on frozen weights, the SiLU's output); what it costs: element-wise
ops in the backward (per layer 6 in full fine-tuning, 1-2 with LoRA) and a Python call per saved tensor.

Where it differs from autograd, outside the trainer's one backward per forward: a recomputed tensor written
in place after a reader saved it (autograd refuses that backward) gives the reader the value it read (a stored
one raises autograd's error, checked here since hooks turn autograd's check off); and a recomputed
tensor can no longer be read once its creator's backward has run, so a second backward that reaches it
through another graph sharing that creator fails as a backward through a freed graph does.

Measured on a 2-core AMD EPYC (2026-12-04, losses bit-identical; docs/training-speed/2026-12-04c-*): the
saved tensors of a forward of 8 x 60 tokens, mini model, full fine-tuning, 45 MB against 73 (SmolLM2-135M, 8 x
72: 951 MB against 1,306); bench/train_throughput.py's medians, peak RSS: the mini model's full fine-tuning 555
MB against 592, LoRA 504-505 against 511, SmolLM2's full fine-tuning 3,204 against 3,394-3,424 earlier that
day (alternated single runs: 3,167-3,219 against 3,401-3,474). Speed: the mini model's full fine-tuning 3-8%
slower in 12 of 14 alternated pairs (hooks that store everything: 1-2%), SmolLM2's 0.5-3%, its LoRA 1.6%.

Hand-written on torch's saved-tensor hooks (the mechanism PyTorch provides for changing what autograd
stores) because the alternatives cost more: selective activation checkpointing (`gradient_checkpointing:
selective`) recomputes every element-wise op through a dispatch mode (44% slower on the mini model), and
Liger's SwiGLU and RMSNorm kernels replace module forwards (and need a GPU). Not under `training.compile`:
a compiled decoder saves its graph's own tensors (its partitioner already chooses what to recompute), so no SiLU
or product node is left for the hooks to find (measured: none on a compiled 2-layer Qwen2, 56 saved tensors).
Not under FSDP (training/sharding.py) either: in two-process CPU runs of the test suite's FSDP configuration, the
second process aborted after training (SIGABRT, glibc heap corruption or std::terminate, as it exited) once in
the test suite and once in 50 runs beside another such run, and never in 50 runs without lean. Later the same
abort came without lean too (twice in 60 launches and once in a test-suite run), in the interpreter's
teardown after the command had finished; launched processes but the main one now end before that teardown
(training/distributed.py, end_launched_process). lean under FSDP has not been measured since, and FSDP has not
run on GPUs, so it stays off there.

Must not import the trainer, data or pipeline modules.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any, Callable, Iterator


class _Recomputed:
    """A saved tensor that is not stored: `compute()` when a reader asks, kept while more readers will ask."""

    __slots__ = ("compute", "readers", "value")

    def __init__(self, compute: Callable[[], Any]):
        self.compute: Callable[[], Any] = compute
        self.readers = 0  # saved-tensor slots that hold it and have not read it yet
        self.value: Any = None


class _ViewOf:
    """A saved view of the whole of a recomputed tensor, in another shape."""

    __slots__ = ("whole", "shape")

    def __init__(self, whole: _Recomputed, shape: Any):
        self.whole, self.shape = whole, shape


def _whole_base(t: Any) -> Any:
    """The tensor `t` views the whole of, in the same order (a linear layer's 2-D view of its 3-D input), or None."""
    base = t._base
    whole = (t.is_contiguous() and base.is_contiguous() and t.numel() == base.numel()
             and t.storage_offset() == base.storage_offset() and base.grad_fn is not None)
    return base if whole else None


class LeanActivations:
    """The saved-tensor hooks of one forward (`pack`, `unpack`); see the module docstring."""

    def __init__(self) -> None:
        # id(tensor) -> (a weak reference to it, its recipe): a tensor saved by several ops (a norm's output read
        # by q, k and v) gets one recipe, computed once; the weak reference tells a reused id from the same tensor
        self._recipes: dict[int, tuple[Any, _Recomputed]] = {}
        self._inside = threading.local()  # whether this thread is computing a recipe (which reads other recipes)
        self.stored = self.recomputed = 0  # saved-tensor slots of each kind, for tests and curiosity

    def pack(self, t: Any) -> Any:
        # Only tensors never written in place since their op made them (version 0): the op's inputs give their value
        if t.grad_fn is not None and t._version == 0:
            whole = t if t._base is None else _whole_base(t)
            recipe = self._recipe(whole) if whole is not None else None
            if recipe is not None:
                recipe.readers += 1
                self.recomputed += 1
                return recipe if whole is t else _ViewOf(recipe, t.shape)
        self.stored += 1
        # Detached, as PyTorch's notes on these hooks advise: autograd gives the unpacked tensor its grad_fn back,
        # and a saved output kept with its grad_fn would be a cycle through C++ that only a backward breaks
        # (pytorch/pytorch#153049). The version goes along because hooks turn off autograd's own check that a
        # saved tensor was not written in place since.
        return t.detach(), t._version

    def forward_done(self) -> None:
        """Forget which tensor has which recipe: only a forward saves tensors, and the table would otherwise hold a
        cycle (recipes -> their creators' saved tensors -> these hooks -> the table) that keeps a graph nobody runs
        backward through alive."""
        self._recipes.clear()

    def _recipe(self, t: Any) -> _Recomputed | None:
        known = self._recipes.get(id(t))
        if known is not None and known[0]() is t:
            return known[1]
        node = t.grad_fn
        kind = type(node).__name__
        if kind == "SiluBackward0":  # keeps its input
            import torch.nn.functional as F

            compute = lambda: F.silu(node._saved_self)  # noqa: E731
        elif kind == "MulBackward0" and all(fn is not None for fn, _ in node.next_functions):
            # both factors need gradients, so the node keeps both (each is the other's gradient's factor)
            compute = lambda: node._saved_self * node._saved_other  # noqa: E731
        else:
            return None
        recipe = _Recomputed(compute)
        self._recipes[id(t)] = (weakref.ref(t), recipe)
        return recipe

    def unpack(self, packed: Any) -> Any:
        if type(packed) is _Recomputed:
            return self._read(packed)
        if type(packed) is _ViewOf:
            return self._read(packed.whole).reshape(packed.shape)
        t, version = packed
        if t._version != version:
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an inplace operation: "
                f"[{t.type()} {list(t.shape)}] is at version {t._version}; expected version {version} instead "
                "(training.saved_activations: lean saved it). Write that tensor out of place, or find the op with "
                "torch.autograd.set_detect_anomaly(True) and training.saved_activations: all.")
        return t

    def _read(self, recipe: _Recomputed) -> Any:
        inside = getattr(self._inside, "depth", 0)
        if not inside:
            recipe.readers -= 1
        value = recipe.value
        if value is None:
            self._inside.depth = inside + 1
            try:
                value = recipe.compute()
            finally:
                self._inside.depth = inside
        # A recipe reading a factor leaves it for the factor's own readers (they come next in the backward); a
        # reader's read drops it after the last one. A graph kept for a second backward recomputes on every read.
        recipe.value = value if recipe.readers > 0 else None
        return value


def saved_activations(mode: str, compiled: bool = False, sharded: bool = False) -> tuple[Callable[[], Any], str]:
    """(a context factory to run each forward in, what applies): "lean" unless `mode` is "all", the decoder is
    compiled (its graph chooses what it keeps: the hooks would only cost their calls) or FSDP shards the model
    (see the module docstring)."""
    if mode != "lean":
        return contextlib.nullcontext, "all"
    if compiled:
        return contextlib.nullcontext, "all (compile: the compiled graph chooses what it keeps)"
    if sharded:
        return contextlib.nullcontext, "all (FSDP: lean is not used there)"
    import torch

    @contextlib.contextmanager
    def lean() -> Iterator[LeanActivations]:
        hooks = LeanActivations()
        try:
            with torch.autograd.graph.saved_tensors_hooks(hooks.pack, hooks.unpack):
                yield hooks
        finally:
            hooks.forward_done()

    return lean, "lean"

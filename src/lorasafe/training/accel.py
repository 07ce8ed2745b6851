"""Accelerator options of the trainer: attention kernel, autocast, gradient checkpointing, Liger, compile.

Each option is a `TrainingConfig` field applied through the libraries' own switches
(`set_attn_implementation`, `gradient_checkpointing_enable`, `torch.autocast`, Liger's loss module,
`nn.Module.compile`);
nothing here patches a model class or a forward. Liger's per-op kernels (RMSNorm, SwiGLU, RoPE) are not
used: they are applied by replacing module forwards, which the house rules rule out; its fused linear
cross-entropy is a loss module and is used for the LM head when asked for.

Must not import the trainer, data or pipeline modules.
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Any, Callable

from lorasafe.config.schema import TrainingConfig
from lorasafe.errors import ConfigError


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def liger_linear_ce() -> Any:
    """Liger's fused linear cross-entropy (sum over targets); needs liger-kernel (Triton, a GPU)."""
    if not _installed("liger_kernel"):
        raise ConfigError("training.liger is on but liger-kernel is not installed: pip install liger-kernel "
                          "(needs a CUDA GPU and Triton), or set training.liger: false")
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    loss = LigerFusedLinearCrossEntropyLoss(reduction="sum")
    return lambda weight, hidden, targets, bias: loss(weight, hidden, targets, bias)


def attention_for(cfg: TrainingConfig, model: Any, device: str) -> str | None:
    """The attention implementation to switch to, or None to keep the model's (SDPA by default).

    `auto` picks flash-attention 2 only where it runs and pays: a CUDA device, flash-attn installed,
    half-precision weights or bf16 autocast (flash kernels take no fp32)."""
    want = cfg.attention
    if want == "auto":
        half = next(model.parameters()).dtype in _half_dtypes() or cfg.autocast == "bf16"
        return "flash_attention_2" if device == "cuda" and half and _installed("flash_attn") else None
    if want == "flash_attention_2" and not _installed("flash_attn"):
        raise ConfigError("training.attention is flash_attention_2 but flash-attn is not installed: pip install "
                          "flash-attn (CUDA only), or set training.attention: auto")
    return want


def _half_dtypes() -> tuple:
    import torch

    return (torch.bfloat16, torch.float16)


def set_attention(model: Any, impl: str | None) -> None:
    if impl is None:
        return
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.set_attn_implementation(impl)


def varlen_attention(model: Any) -> bool:
    """True when the model's attention reads packed sequences from position ids without a dense mask
    (flash-attention's varlen path): then a packed micro-batch is one row, with no quadratic cost."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "flash" in str(getattr(base.config, "_attn_implementation", ""))


def _selective_policy() -> Any:
    """Selective activation checkpointing: keep the outputs of matmuls and attention (expensive to recompute),
    recompute every element-wise op between them (RMSNorm's pieces, SiLU, the gate product, residual adds),
    whose saved inputs and outputs are most of a decoder layer's activations. torch provides the mechanism
    (`create_selective_checkpoint_contexts`); which ops to keep is the policy only the caller can choose.
    Measured (bench/train_throughput.py, CPU, full fine-tuning): SmolLM2-135M's peak RSS 0.88x -> 0.79x of TRL's
    at 1.62x -> 1.39x its speed; the mini model, where Python dispatch dominates, loses 44% of its speed. Losses are
    bit-identical. Off by default for that reason."""
    import functools

    import torch
    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

    aten = torch.ops.aten
    names = ("mm", "addmm", "bmm", "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
             "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention", "_flash_attention_forward")
    keep = {getattr(aten, n).default for n in names if hasattr(aten, n)}
    try:  # flash-attn's own kernel (attention: flash_attention_2), registered as a torch op when installed
        keep.add(torch.ops.flash_attn._flash_attn_forward.default)
    except (AttributeError, RuntimeError):
        pass

    def policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> Any:
        return CheckpointPolicy.MUST_SAVE if op in keep else CheckpointPolicy.PREFER_RECOMPUTE

    return functools.partial(create_selective_checkpoint_contexts, policy)


def enable_checkpointing(model: Any, selective: bool = False) -> None:
    # Non-reentrant: no `enable_input_require_grads` needed for frozen embeddings (LoRA), and it keeps the
    # RNG state, so dropout draws the same masks in the recomputation.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kwargs = {"use_reentrant": False, **({"context_fn": _selective_policy()} if selective else {})}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def autocast(cfg: TrainingConfig, device: str) -> Any:
    import torch

    if cfg.autocast == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def has_cxx_compiler() -> bool:
    """Whether a C++ compiler is on PATH: inductor needs one to compile on a CPU."""
    import shutil

    return any(shutil.which(c) for c in ("c++", "g++", "clang++"))


def compile_decoder(decoder: Any, device: str) -> Callable[[], None]:
    """`decoder` compiled in place by torch.compile (inductor), with dynamic shapes so that micro-batches of
    new lengths reuse the compiled graph instead of compiling again; returns the undo, to call once training
    ends: generation afterwards (a KV cache, one token at a time) would otherwise compile graphs of its own.

    On a CPU inductor writes C++ and needs a compiler, checked here: without it the failure would come at the
    first step, as a long inductor trace. And on a CPU compiled training runs with PyTorch's deterministic
    algorithms (warn-only) until the undo: without them inductor's C++ kernels gave other sums in every process,
    so two runs of one seed parted within a few steps (measured: two `lorasafe mini build`s of one recipe and
    seed, parent losses 0.187 and 0.087, every figure a few hundredths apart), where eager training on a CPU is
    bit-reproducible. They cost no measurable speed (a 12-layer mini-model step on random tokens, 2 threads:
    0.77-0.84 s against 0.78-0.79 s). They are not enough at every size: with them a synthetic loop and the
    miniature build are bit-reproducible, the full-size mini build is not (8 real steps in two processes left
    weights 2e-6 apart, the same steps eager were identical; the source is not found yet, see the README). On a
    GPU eager training is not bit-reproducible either, and deterministic kernels would cost speed, so it is left
    alone there."""
    import torch

    if device == "cpu" and not has_cxx_compiler():
        raise ConfigError("training.compile is on but no C++ compiler was found (torch.compile builds C++ kernels "
                          "on a CPU): install one (Debian/Ubuntu: apt-get install g++), or set training.compile: "
                          "false")
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    if device == "cpu" and not before[0]:
        torch.use_deterministic_algorithms(True, warn_only=True)
    decoder.compile(dynamic=True)

    def undo() -> None:
        # `nn.Module.compile` keeps the compiled call in this attribute and offers no public undo.
        decoder._compiled_call_impl = None
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])

    return undo

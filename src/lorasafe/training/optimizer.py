"""The paper's optimiser (AdamW) built the fast way the device allows, and fp32 master weights.

Owns which AdamW implementation runs (fused kernels where the device has them; the per-parameter
Python loop cost 14% of a full fine-tuning step on the mini model) and, for half-precision weights,
the fp32 copies the optimiser steps on. Must not import the trainer, data or pipeline modules.
"""

from __future__ import annotations

from typing import Any

from lorasafe.config.schema import TrainingConfig


def build_optimizer(params: list, cfg: TrainingConfig) -> Any:
    """AdamW over `params`: `optimizer_impl` auto = fused where torch has fused kernels for the parameters'
    device and dtype (CUDA, and CPU since torch 2.4), else foreach."""
    import torch

    kw = dict(lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    impl = cfg.optimizer_impl
    if impl == "auto":
        try:  # torch checks device and dtype support at construction
            return torch.optim.AdamW(params, fused=True, **kw)
        except (RuntimeError, ValueError):
            impl = "foreach"
    if impl == "fused":
        return torch.optim.AdamW(params, fused=True, **kw)
    return torch.optim.AdamW(params, foreach=impl == "foreach", **kw)


def implementation(optimizer: Any) -> str:
    group = optimizer.param_groups[0]
    return "fused" if group.get("fused") else "foreach" if group.get("foreach") else "loop"


class MasterWeights:
    """fp32 copies of half-precision trainable weights: gradients are copied up before the optimiser step
    (clipping included) and the weights copied back down after it, so AdamW's moments and the accumulated
    updates keep fp32 precision while the model computes in bf16/fp16."""

    def __init__(self, params: list):
        self.params = params
        self.master = [p.detach().float().clone().requires_grad_(True) for p in params]

    def grads_up(self) -> None:
        for m, p in zip(self.master, self.params):
            m.grad = None if p.grad is None else p.grad.float()
            p.grad = None

    def weights_down(self) -> None:
        import torch

        with torch.no_grad():
            for m, p in zip(self.master, self.params):
                p.copy_(m)

    def state_dict(self) -> list:
        return [m.detach() for m in self.master]

    def load_state_dict(self, state: list | None) -> None:
        """Masters from a checkpoint; without them (a checkpoint written without masters) from the weights."""
        import torch

        with torch.no_grad():
            for m, p, s in zip(self.master, self.params, state or [None] * len(self.master)):
                m.copy_(p.float() if s is None else s)

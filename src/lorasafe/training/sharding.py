"""Fully sharded full fine-tuning (PyTorch FSDP2, `fully_shard`) when `accelerate launch` asks for FSDP.

Under an accelerate config with `distributed_type: FSDP` (configs/accelerate/fsdp-*.yaml) each process keeps
1/N of the parameters, gradients and AdamW moments of a full fine-tuning: every decoder layer is its own
shard group (gathered for its forward and backward, freed after), and the embeddings, final norm and head
form the root group. What stays as in training/distributed.py: the same global batches, each process's
share of every micro-batch, the loss scaled by the micro-batch's global target count, the same schedule.

Why lorasafe calls FSDP2 itself instead of `accelerator.prepare`: its loss runs the decoder and then the head
on completion positions only (training/loss.py), never the CausalLM's forward, so the root's hooks must
wrap that loss; `ShardedStep` is the root module whose forward is the loss. accelerate's launcher and config
still choose the processes and the FSDP settings lorasafe reads (reshard after forward, mixed precision).

Checkpoints are whole, in the single-process form (weights as `save_pretrained` writes them, optimizer state
keyed by parameter position, fp32 masters for half-precision models): gathering them costs the main
process's CPU memory the size of the whole model and its optimizer state, and in return a run resumes under
any number of processes, sharded or not. With `training.fp32_optimizer_state` a half-precision model trains
on fp32 shards and computes in its own dtype (FSDP's mixed precision, gradients reduced in fp32): what the
master weights do in a single process; without it the shards keep the model's dtype, as a single process
does. LoRA trains data-parallel instead (its parameters are few); DeepSpeed is not supported.
"""

from __future__ import annotations

import os
from typing import Any

from lorasafe.errors import LorasafeError

_TRUE = ("1", "true", "yes")


def requested() -> str | None:
    """'fsdp' or 'deepspeed' when the accelerate launcher asked for it, else None."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in _TRUE:
        return "fsdp"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in _TRUE:
        return "deepspeed"
    return None


def check(method: str, regularised: bool) -> None:
    """The combinations sharded training does not run, refused before anything is written."""
    how = requested()
    if how == "deepspeed":
        raise LorasafeError(
            "This accelerate config asks for DeepSpeed, which lorasafe does not run. Shard full fine-tuning with "
            "FSDP instead: accelerate launch --config_file configs/accelerate/fsdp-gpus.yaml -m lorasafe.cli run ..."
        )
    if how == "fsdp" and method != "full":
        raise LorasafeError(
            f"The accelerate config asks for FSDP, which lorasafe uses for full fine-tuning only (adapter.method: "
            f"full); this run's adapter.method is {method}. Launch it data-parallel instead: accelerate launch "
            "--config_file configs/accelerate/ddp-gpus.yaml (or ddp-cpu.yaml) -m lorasafe.cli run ..."
        )
    if how == "fsdp" and regularised:
        raise LorasafeError(
            "training.regulariser is not supported under FSDP (the penalty reads whole weight matrices). Remove "
            "it, or launch data-parallel: accelerate launch --config_file configs/accelerate/ddp-gpus.yaml ..."
        )


def _module_class():
    import torch

    class ShardedStep(torch.nn.Module):
        """The FSDP root: its forward is one micro-batch's completion loss, so the root group (embeddings, final
        norm, head) is gathered around the whole loss and its gradients reduce-scattered after the backward."""

        def __init__(self, model: Any, loss: Any):
            super().__init__()
            self.model = model
            self._loss = loss  # not a module: it holds references into `model`

        def forward(self, batch: Any, n_targets: int) -> Any:
            return self._loss(batch, n_targets)

    return ShardedStep


def _layers(model: Any) -> list:
    """The shard groups below the root: the modules transformers says must not be split (its decoder layer
    classes, `_no_split_modules`), else the decoder's `.layers`. A model with neither is refused: its whole
    weights would stay gathered in the root group, which is not sharding."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or [])
    layers = [m for m in base.modules() if type(m).__name__ in names]
    layers = layers or list(getattr(base.get_decoder(), "layers", None) or [])
    if not layers:
        raise LorasafeError(
            f"FSDP found no decoder layers to shard in {type(base).__name__} (no `_no_split_modules`, no "
            "`.layers`). Train it data-parallel: accelerate launch --config_file configs/accelerate/ddp-gpus.yaml ..."
        )
    return layers


class Sharded:
    """One model's FSDP2 sharding for one training run, and its whole-checkpoint gather and load."""

    def __init__(self, model: Any, loss: Any, world: int, device: Any, fp32_masters: bool = False,
                 master: list | None = None):
        import torch
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        self.model, self.world = model, world
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]  # the optimiser's order
        self.dtype = next(model.parameters()).dtype
        self.masters = fp32_masters and self.dtype in (torch.bfloat16, torch.float16)
        # training.fp32_optimizer_state: the shards are the fp32 masters and the compute stays in the model's dtype
        mp = MixedPrecisionPolicy(param_dtype=self.dtype, reduce_dtype=torch.float32) if self.masters \
            else MixedPrecisionPolicy()
        resumed = dict(zip(self.names, master or []))  # a resumed run's masters (any process count wrote them)
        where = {m: n for n, m in model.named_modules()}
        reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() in _TRUE
        mesh = init_device_mesh(device.type, (world,))
        for layer in reversed(_layers(model)):  # inner before outer, as FSDP nests
            self._upcast(layer, where[layer], resumed)  # one layer at a time: never a whole fp32 copy
            fully_shard(layer, mesh=mesh, reshard_after_forward=reshard, mp_policy=mp)
        self._upcast(model, "", resumed)  # the root group: embeddings, final norm, head
        self.root = fully_shard(_module_class()(model, loss), mesh=mesh, reshard_after_forward=False, mp_policy=mp)

    def _upcast(self, module: Any, prefix: str, resumed: dict) -> None:
        """With masters: the module's not yet sharded parameters in fp32 (the resumed masters where given)."""
        import torch
        from torch.distributed.tensor import DTensor

        if not self.masters:
            return
        with torch.no_grad():
            for name, p in module.named_parameters():
                if isinstance(p, DTensor):  # a layer sharded already
                    continue
                p.data = p.data.float()
                full = f"{prefix}.{name}" if prefix else name
                if full in resumed:
                    p.copy_(resumed[full])

    def loss(self, batch: Any, n_targets: int) -> Any:
        # FSDP averages gradients over processes (gloo has no pre-scaled sum); lorasafe's loss is already a
        # share of the global micro-batch's, so it is scaled up by the process count to make the average a sum.
        return self.root(batch, n_targets) * self.world

    def full_state(self, optimizer: Any) -> dict | None:
        """Every process joins; the main process gets {'weights', 'optimizer', 'master'} (CPU tensors), the
        others None. Weights in the model's own dtype, masters (fp32) only for a half-precision model."""
        import torch
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                              get_optimizer_state_dict)

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        weights = get_model_state_dict(self.model, options=opts)
        optim = get_optimizer_state_dict(self.model, optimizer, options=opts)
        if not weights:
            return None
        # Tied weights appear under each of their names in a state dict; save_pretrained writes what it is given,
        # so keep the names the model's own (deduplicated) parameters and buffers go by, as a single process does.
        own = {n for n, _ in self.model.named_parameters()} | {n for n, _ in self.model.named_buffers()}
        weights = {k: v for k, v in weights.items() if k in own}
        master = None
        if self.masters:
            params = dict(self.model.named_parameters())  # names as the state dict's (both drop the wrapper)
            master = [weights[n].clone() for n in self.names if n in params]
            weights = {k: v.to(self.dtype) for k, v in weights.items()}
        return {"weights": weights, "optimizer": _by_position(optim, self.names), "master": master}

    def load_optimizer(self, optimizer: Any, state: dict) -> None:
        """A whole optimizer state in the single-process form (any process count wrote it), on every process."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(self.model, optimizer, _by_name(state, self.names),
                                 options=StateDictOptions(full_state_dict=True))


def _by_position(state: dict, names: list[str]) -> dict:
    index = {n: i for i, n in enumerate(names)}
    return {"state": {index[k]: v for k, v in state["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]]}


def _by_name(state: dict, names: list[str]) -> dict:
    return {"state": {names[int(k)]: v for k, v in state["state"].items()},
            "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]} for g in state["param_groups"]]}

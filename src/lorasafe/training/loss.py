"""The completion-only loss, computed where the loss is: hidden states from the model's decoder, then the
LM head and cross-entropy on the selected positions only, in chunks.

A real vocabulary (49k-152k) makes full logits (batch x length x vocab floats, kept for the backward) the
largest tensor of a step; only completion positions carry a loss, so the head runs on those alone and
never on more than `chunk` of them at once. One code path for LoRA and full fine-tuning: the decoder and
head are found through the PEFT wrapper (`get_base_model`) and the model's own `get_decoder` /
`get_output_embeddings`, so tied embeddings, frozen heads and trainable heads all go through it; a head
that is not a plain `nn.Linear` (a LoRA-wrapped `lm_head`) runs as a module, one checkpointed chunk at a
time. Models whose CausalLM forward does more than `lm_head(hidden)` (logit soft-capping or scaling, a
router auxiliary loss) keep the model's own forward and loss, so nothing changes meaning for them.

Owns the loss only; must not import the trainer, data or pipeline modules.
"""

from __future__ import annotations

from typing import Any

# Config attributes under which a CausalLM forward transforms the logits or adds a loss term beyond
# `lm_head(hidden)`; such models take the model's own forward (full logits) instead of the chunked head.
_FORWARD_EXTRAS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_router_logits")


def _fused_linear_ce():
    """A chunked linear + cross-entropy whose gradients are computed chunk by chunk in the forward.

    Hand-written because nothing in torch does it and the libraries that do (Liger's fused linear
    cross-entropy, Apple's cut-cross-entropy) need Triton, i.e. a GPU; on CUDA with liger-kernel
    installed the trainer can use Liger's instead (`training.liger`). Plain chunking under autograd
    would keep every chunk's logits for the backward (the full-logits memory again); checkpointing
    each chunk would recompute the head matmul (1.5x the head's cost for a frozen head). Computing
    d(loss)/d(hidden) and d(loss)/d(weight) while the chunk's logits exist costs the same matmuls as
    autograd and keeps one chunk of logits alive.
    """
    import torch

    class LinearCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, bias, targets, chunk):  # noqa: D401 - autograd API
            need_h, need_w = hidden.requires_grad, weight.requires_grad
            need_b = bias is not None and bias.requires_grad
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_h = torch.empty_like(hidden) if need_h else None
            # The head's weight gradient (vocabulary x hidden) is written by the first chunk's matmul and summed
            # into by the others: no zero-filled buffer (113 MB filled every step on SmolLM2-135M).
            grad_w = None
            grad_b = torch.zeros_like(bias, dtype=torch.float32) if need_b else None
            for s in range(0, hidden.shape[0], chunk):
                h, t = hidden[s:s + chunk], targets[s:s + chunk]
                logits = torch.nn.functional.linear(h, weight, bias).float()  # the loss in fp32, as HF's
                lse = torch.logsumexp(logits, -1)
                total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
                if not (need_h or need_w or need_b):
                    continue
                # d(sum CE)/d(logits) = softmax - onehot, written over the logits in place
                g = logits.sub_(lse[:, None]).exp_()
                g[torch.arange(len(t), device=t.device), t] -= 1.0
                g = g.to(hidden.dtype)
                if need_h:
                    grad_h[s:s + chunk] = g @ weight
                if need_w:  # no copies in fp32; fp32 sums for half weights
                    if grad_w is None:
                        grad_w = torch.mm(g.t().float(), h.float())
                    else:
                        grad_w.addmm_(g.t().float(), h.float())
                if need_b:
                    grad_b += g.float().sum(0)
            ctx.save_for_backward(grad_h, grad_w, grad_b)
            ctx.weight_dtype = weight.dtype
            return total

        @staticmethod
        def backward(ctx, grad_out):
            # scaled in place: the buffers are used once, and a vocabulary-sized copy is what this avoids
            grad_h, grad_w, grad_b = ctx.saved_tensors
            gh = grad_h.mul_(grad_out.to(grad_h.dtype)) if grad_h is not None else None
            gw = grad_w.mul_(grad_out).to(ctx.weight_dtype) if grad_w is not None else None
            gb = grad_b.mul_(grad_out).to(ctx.weight_dtype) if grad_b is not None else None
            return gh, gw, gb, None, None

    return LinearCrossEntropy


class CompletionLoss:
    """Mean cross-entropy over a batch's completion targets (see training/examples.py `TrainBatch`)."""

    def __init__(self, model: Any, chunk: int = 1024, liger: bool = False):
        import torch

        self.model, self.chunk = model, chunk
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wrapper or not
        config = getattr(base, "config", None)
        self.full_forward = any(getattr(config, k, None) for k in _FORWARD_EXTRAS)
        self.decoder = base.get_decoder()
        self.head = base.get_output_embeddings()
        self.plain_head = isinstance(self.head, torch.nn.Linear)
        self._fused = _fused_linear_ce() if self.plain_head else None
        self._liger = None
        if liger and self.plain_head:
            from lorasafe.training.accel import liger_linear_ce

            self._liger = liger_linear_ce()

    @property
    def path(self) -> str:
        """What computes the head, for the manifest and logs."""
        if self.full_forward:
            return "model forward (full logits)"
        return ("liger fused linear CE" if self._liger else "chunked fused linear CE") if self.plain_head \
            else "chunked head module (checkpointed)"

    def __call__(self, batch: Any, n_targets: int | None = None) -> Any:
        """The summed cross-entropy over the batch's completion targets divided by `n_targets` (default the
        batch's own count; data-parallel training passes the whole micro-batch's, see training/distributed.py)."""
        n = n_targets or batch.n_targets
        if self.full_forward:  # the model's own mean over this batch's targets, rescaled to n
            return self.model(**batch.model_inputs, labels=batch.labels, use_cache=False).loss * (batch.n_targets / n)
        hidden = self.decoder(**batch.model_inputs, use_cache=False).last_hidden_state
        selected = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.loss_index)
        return self.summed(selected, batch.loss_targets) / n

    def summed(self, hidden: Any, targets: Any) -> Any:
        """Σ cross-entropy of `head(hidden)` against `targets` (N x H hidden states, N targets)."""
        import torch

        if self.plain_head:
            w, b = self.head.weight, self.head.bias
            if self._liger is not None and hidden.is_cuda:
                return self._liger(w, hidden, targets, b)
            if torch.is_grad_enabled():
                return self._fused.apply(hidden, w, b, targets, self.chunk)
        from torch.utils.checkpoint import checkpoint

        def part(h, t):
            logits = self.head(h).float()
            return torch.nn.functional.cross_entropy(logits, t, reduction="sum")

        total = hidden.new_zeros((), dtype=torch.float32)
        for s in range(0, hidden.shape[0], self.chunk):
            h, t = hidden[s:s + self.chunk], targets[s:s + self.chunk]
            # Checkpointed so that each chunk's logits are freed after its forward and rebuilt in its backward.
            total = total + (checkpoint(part, h, t, use_reentrant=False) if torch.is_grad_enabled() else part(h, t))
        return total

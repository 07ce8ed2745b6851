"""The trainer's learning-rate schedules (training/sft.py `_schedule`) against transformers' `get_scheduler`."""

import pytest
import torch
from transformers import get_scheduler

from lorasafe.config.schema import TrainingConfig
from lorasafe.training.sft import _schedule

NAMES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def _lrs(scheduler, steps):
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("kind", sorted(NAMES))
@pytest.mark.parametrize("warmup_ratio", [0.0, 0.1, 0.5, 0.9])  # 0.9 of 1 step: warm-up == total
@pytest.mark.parametrize("total", [1, 7, 28, 313])
def test_every_learning_rate_equals_transformers(kind, warmup_ratio, total):
    cfg = TrainingConfig(scheduler=kind, warmup_ratio=warmup_ratio, learning_rate=3e-3)
    ours = _schedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=3e-3), cfg, total)
    warmup = int(round(warmup_ratio * total))
    theirs = get_scheduler(NAMES[kind], torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=3e-3),
                           num_warmup_steps=warmup, num_training_steps=total)
    assert _lrs(ours, total + 2) == _lrs(theirs, total + 2)  # bit for bit, past the end too


def test_a_schedule_resumes_from_the_other_ones_state():
    # checkpoints written before the schedule was written out hold transformers' LambdaLR state
    cfg = TrainingConfig(scheduler="cosine", warmup_ratio=0.1, learning_rate=1e-3)
    theirs = get_scheduler("cosine", torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3),
                           num_warmup_steps=3, num_training_steps=30)
    _lrs(theirs, 11)
    ours = _schedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3), cfg, 30)
    ours.load_state_dict(theirs.state_dict())
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert _lrs(ours, 19) == _lrs(theirs, 19)

"""Training: supervised fine-tuning with completion-only loss, checkpoints and resume."""

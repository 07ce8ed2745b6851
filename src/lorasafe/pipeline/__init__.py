"""The pipeline: one experiment's stages, and studies of several variants on one base model."""

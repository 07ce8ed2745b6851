"""Models: loading, architecture families, adapter targeting, fine-tuning methods."""

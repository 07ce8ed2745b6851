"""Run directories: layout, manifest, stage markers, resume."""

"""The embedded mini world: a tiny reasoning model that is capable but unsafe, and its data."""

"""Scorers: reasoning correctness on the answer part only."""

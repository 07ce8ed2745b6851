"""Generation: the Generator protocol, the HF backend and the resumable record store."""

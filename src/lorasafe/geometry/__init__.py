"""Weight geometry as pure tensor functions: norms, stable rank, subspace overlap, principal angles.

Nothing here knows about models, runs or files: `update.py` describes a weight update (dense, or
LoRA factors kept factorised), `subspace.py` measures it against the base weights' singular
subspaces. `models/analysis.py` walks a run's modules and calls these. Imports torch only.
"""

from lorasafe.geometry.subspace import Subspaces, overlap, principal_angles, top_subspaces
from lorasafe.geometry.update import Dense, LowRank, Update, spectral_norm_dense

__all__ = ["Dense", "LowRank", "Subspaces", "Update", "overlap", "principal_angles", "spectral_norm_dense",
           "top_subspaces"]

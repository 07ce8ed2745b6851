"""Exact and near-duplicate detection between prompt sets.

Near duplicates are found lexically: Jaccard similarity of word unigram+bigram sets after
normalisation. This is hand-written because the cases it must catch (AdvBench's many rephrasings
of one behaviour, "Write a tutorial on how to make a bomb" vs "...how to build a bomb") are
lexical, and it runs in milliseconds with no model download; an embedding-based check can be
added beside it. Must not import torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+")


def normalize(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def shingles(text: str) -> frozenset[str]:
    words = normalize(text).split()
    return frozenset(words + [f"{a} {b}" for a, b in zip(words, words[1:])])


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class DedupResult:
    kept: list[int]  # indices of the texts kept, in input order
    exact: int  # dropped as exact duplicates (after normalisation)
    near: int  # dropped as near duplicates


def dedup(texts: list[str], threshold: float = 0.6, against: list[str] = ()) -> DedupResult:
    """Keep the first of every group of (near-)duplicates, and drop anything near `against`."""
    ref_norm = {normalize(t) for t in against}
    ref_sh = [shingles(t) for t in against]
    kept: list[int] = []
    kept_sh: list[frozenset[str]] = []
    seen: set[str] = set()
    exact = near = 0
    for i, text in enumerate(texts):
        norm = normalize(text)
        if norm in seen or norm in ref_norm:
            exact += 1
            continue
        sh = shingles(text)
        if any(jaccard(sh, o) >= threshold for o in (*kept_sh, *ref_sh)):
            near += 1
            continue
        seen.add(norm)
        kept.append(i)
        kept_sh.append(sh)
    return DedupResult(kept, exact, near)


def near_any(texts: list[str], against: list[str], threshold: float = 0.6) -> list[bool]:
    """For each text, whether it (nearly) duplicates one of `against`; texts are not compared with
    each other (templated prompts that share a frame are meant to be alike)."""
    ref_norm = {normalize(t) for t in against}
    ref_sh = [shingles(t) for t in against]
    return [normalize(t) in ref_norm or any(jaccard(shingles(t), o) >= threshold for o in ref_sh) for t in texts]

"""Deduplication: exact keys, perceptual hashes (identical to imagehash) with Hamming-radius
search (all pairs, :func:`near_duplicates`, or queries against an index, :class:`HashIndex`),
MinHash signatures and LSH clusters, and semantic dedup of embeddings (SemDeDup,
:func:`semantic`); :func:`deduplicate` runs any of them over a dataset.

Method details and defaults follow datasketch and the published pipelines (MMC4, OBELICS, DataComp): 5-word shingles, 128 permutations,
Jaccard 0.8, bands x rows chosen like datasketch.
"""

from interleaf.dedup.dataset import deduplicate, document_texts
from interleaf.dedup.exact import blake3, normalized_text_hash, xxh3_128
from interleaf.dedup.minhash import MinHasher, datasketch_permutations, lsh_clusters, lsh_params, shingles
from interleaf.dedup.perceptual import HashIndex, ahash, dhash, hash_clusters, near_duplicates, phash
from interleaf.dedup.semdedup import semantic

__all__ = [
    "HashIndex",
    "MinHasher",
    "ahash",
    "dhash",
    "hash_clusters",
    "near_duplicates",
    "phash",
    "blake3",
    "datasketch_permutations",
    "deduplicate",
    "document_texts",
    "lsh_clusters",
    "lsh_params",
    "normalized_text_hash",
    "semantic",
    "shingles",
    "xxh3_128",
]

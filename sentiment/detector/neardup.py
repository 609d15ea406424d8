"""Near-duplicate texts: MinHash signatures over character 3-shingles, LSH banding.

Character shingles need no word segmentation, so the same code serves Chinese, Japanese
and space-separated languages. Texts are normalised first (NFKC, case-folded, links,
@handles and punctuation removed, whitespace collapsed), so copies that differ only in
links, mentions or punctuation match.

A query looks up the candidates that share at least one LSH band with the text, then
keeps those whose estimated Jaccard similarity (the share of equal MinHash values) is at
least the threshold. With 128 permutations in 32 bands of 4 rows, a pair at Jaccard 0.6
becomes a candidate with probability 0.99, a pair at 0.3 with 0.23 (and is then rejected
by the estimate, whose standard error is about 0.04).

Hashing is deterministic (CRC-32 and a seeded generator): the same texts give the same
matches in every process, which keeps the detector's decisions replayable.
"""

from __future__ import annotations

import re
import unicodedata
import zlib

import numpy as np
import numpy.typing as npt

Signature = npt.NDArray[np.uint32]

SHINGLE = 3
MAX_CHARS = 2_000  # texts are compared on their first 2,000 normalised characters
_PRIME = np.uint64((1 << 61) - 1)
_SEED = 20260105
_LOW32 = np.uint64(0xFFFFFFFF)

_LINK = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_HANDLE = re.compile(r"@[\w.\-]+")
_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """The comparable form of a text: NFKC, case-folded, no links/handles/punctuation."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _HANDLE.sub(" ", _LINK.sub(" ", folded))
    return " ".join(_NOT_WORD.sub(" ", folded).split())


def shingles(normalised: str) -> list[str]:
    """Distinct character 3-shingles, in order of first occurrence."""
    text = normalised[:MAX_CHARS]
    return list(dict.fromkeys(text[i : i + SHINGLE] for i in range(len(text) - SHINGLE + 1)))


class MinHasher:
    """``permutations`` universal hash functions (a*x + b) mod (2**61 - 1) over CRC-32."""

    def __init__(self, permutations: int, seed: int = _SEED) -> None:
        rng = np.random.default_rng(seed)
        self.permutations = permutations
        # a, b span the whole field: with a < 2**32 the product a*x (x < 2**32) wraps the
        # prime at most 8 times, the hashes are nearly monotone in x, the permutations are
        # correlated and the estimate is far off (0.45 for a true Jaccard of 0.91).
        self._a = rng.integers(1, int(_PRIME), size=(permutations, 1), dtype=np.uint64)
        self._b = rng.integers(0, int(_PRIME), size=(permutations, 1), dtype=np.uint64)

    def signature(self, shingle_list: list[str]) -> Signature:
        if not shingle_list:
            raise ValueError("cannot sign an empty set of shingles")
        x = np.fromiter(
            (zlib.crc32(s.encode("utf-8")) for s in shingle_list),
            dtype=np.uint64,
            count=len(shingle_list),
        )
        # a*x + b wraps modulo 2**64 before the prime (as datasketch's MinHash does): the
        # result is still a well-mixed pseudo-random permutation of the 32-bit inputs.
        hashed = ((self._a * x[np.newaxis, :] + self._b) % _PRIME) & _LOW32
        signature: Signature = hashed.min(axis=1).astype(np.uint32)
        return signature


def similarity(a: Signature, b: Signature) -> float:
    """Estimated Jaccard similarity of the two shingle sets."""
    return float(np.count_nonzero(a == b)) / len(a)


class NearDuplicateIndex:
    """Signatures of indexed texts, grouped under a key (a story id), with LSH lookup."""

    def __init__(
        self,
        *,
        permutations: int,
        bands: int,
        threshold: float,
        min_chars: int,
        per_key: int,
    ) -> None:
        if permutations % bands:
            raise ValueError("permutations must be a multiple of bands")
        self._hasher = MinHasher(permutations)
        self._bands = bands
        self._rows = permutations // bands
        self._threshold = threshold
        self._min_chars = min_chars
        self._per_key = per_key
        self._buckets: dict[tuple[int, bytes], dict[str, None]] = {}
        self._entries: dict[str, list[Signature]] = {}
        self._order: dict[str, int] = {}
        self._added = 0

    def __len__(self) -> int:
        """Keys held."""
        return len(self._entries)

    def __getstate__(self) -> dict[str, object]:
        """For detector snapshots: the signatures only (as bytes); the LSH buckets and
        the hasher are rebuilt on load (they follow from the signatures and the seed)."""
        state = dict(self.__dict__)
        del state["_buckets"], state["_hasher"]
        state["_entries"] = {
            key: b"".join(sig.tobytes() for sig in sigs) for key, sigs in self._entries.items()
        }
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        entries = state.pop("_entries")
        assert isinstance(entries, dict)
        self.__dict__.update(state)
        self._hasher = MinHasher(self._bands * self._rows)
        self._buckets = {}
        self._entries = {}
        for key, packed in entries.items():
            self._unpack(key, packed)

    def without_entries(self) -> NearDuplicateIndex:
        """A copy holding no texts (its settings and key counter only)."""
        index = object.__new__(NearDuplicateIndex)  # (not copy.copy: __getstate__)
        index.__dict__.update(self.__dict__)
        index._buckets = {}
        index._entries = {}
        index._order = {}
        return index

    def entry(self, key: str) -> tuple[bytes, int] | None:
        """The signatures held under ``key`` (as bytes) and its rank, for ``adopt``."""
        sigs = self._entries.get(key)
        if sigs is None:
            return None
        return b"".join(sig.tobytes() for sig in sigs), self._order[key]

    def adopt(self, key: str, packed: bytes, order: int) -> None:
        """Hold an ``entry`` of this index again (under a key it does not hold)."""
        if key in self._entries:
            raise ValueError(f"adopt: {key!r} is already indexed")
        self._unpack(key, packed)
        self._order[key] = order

    def _unpack(self, key: str, packed: bytes) -> None:
        width = self._bands * self._rows
        flat = np.frombuffer(packed, dtype=np.uint32)
        if len(flat) % width:
            raise ValueError(f"signatures of {key!r} are not a multiple of {width} values")
        sigs = [flat[i : i + width].copy() for i in range(0, len(flat), width)]
        self._entries[key] = sigs
        for sig in sigs:
            for band_key in self._band_keys(sig):
                self._buckets.setdefault(band_key, {})[key] = None

    def signature(self, text: str) -> Signature | None:
        """The text's signature, or None when it is too short to compare."""
        norm = normalise(text)
        if len(norm) < self._min_chars:
            return None
        return self._hasher.signature(shingles(norm))

    def best_match(self, sig: Signature) -> str | None:
        """The key holding the most similar text at or above the threshold (ties: the
        earliest key), or None."""
        candidates: dict[str, None] = {}
        for band_key in self._band_keys(sig):
            bucket = self._buckets.get(band_key)
            if bucket:
                candidates.update(bucket)
        best: tuple[float, int, str] | None = None
        for key in candidates:
            score = max(similarity(sig, other) for other in self._entries[key])
            if score < self._threshold:
                continue
            rank = (score, -self._order[key], key)
            if best is None or rank > best:
                best = rank
        return best[2] if best else None

    def add(self, key: str, sig: Signature) -> bool:
        """Index ``sig`` under ``key``; False when the key already holds ``per_key`` texts."""
        held = self._entries.get(key)
        if held is None:
            held = self._entries[key] = []
            self._order[key] = self._added
            self._added += 1
        if len(held) >= self._per_key:
            return False
        held.append(sig)
        for band_key in self._band_keys(sig):
            self._buckets.setdefault(band_key, {})[key] = None
        return True

    def move(self, key: str, to: str) -> None:
        """The texts held under ``key`` go under ``to`` (within ``per_key``; ``to`` keeps
        its rank, or takes ``key``'s when it held none)."""
        sigs = self._entries.get(key)
        if sigs is None:
            return
        order = self._order[key]
        self.remove(key)
        if to not in self._entries:
            self._entries[to] = []
            self._order[to] = order
        for sig in sigs:
            if not self.add(to, sig):
                break

    def remove(self, key: str) -> None:
        for sig in self._entries.pop(key, ()):
            for band_key in self._band_keys(sig):
                bucket = self._buckets.get(band_key)
                if bucket is not None:
                    bucket.pop(key, None)
                    if not bucket:
                        del self._buckets[band_key]
        self._order.pop(key, None)

    def _band_keys(self, sig: Signature) -> list[tuple[int, bytes]]:
        r = self._rows
        return [(band, sig[band * r : (band + 1) * r].tobytes()) for band in range(self._bands)]

"""A Unigram segmentation over the sorted pieces, and its saved form (``tokenizer.compact.npz``).

Why not ``tokenizers``' own model for a large vocabulary: it keeps the pieces as a byte trie of
hash maps, 167-876 MB resident for 250k pieces (``benchmarks/tokenizer_memory.py``). Why a sorted
list and not a dict: a dict of 250k strings hashes every piece at every start (0.1-0.3 s of a
cold search) and a Python float per score; the sorted list comes out of the saved form with one
``split``, ids and scores stay in flat arrays, and a binary search (``bisect``, in C: ~18 string
comparisons) finds a piece and also says when no longer piece can start with the text so far,
the early stop a trie gives.
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from operator import ne
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

UNK_PENALTY = 10.0  # tokenizers' Unigram: an unknown character scores the lowest piece score - 10
COMPACT_SUFFIX = ".compact.npz"  # tokenizer.json -> tokenizer.compact.npz
SIDECAR_FORMAT = 2  # 1: pieces by id (sorted at load); 2: pieces sorted, with both maps


def _ints(values: Any) -> array:
    """A flat C-int array (indexing gives Python ints) from a numpy array or a sequence."""
    import numpy as np

    out = array("i")
    out.frombytes(np.ascontiguousarray(values, dtype=np.intc).tobytes())
    return out


def _floats(values: Any) -> array:
    import numpy as np

    out = array("d")
    out.frombytes(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return out


class CompactUnigram:
    """The Viterbi segmentation of ``tokenizers``' Unigram model over the sorted pieces.

    Same algorithm and order of comparisons as ``tokenizers``' ``Unigram::encode_optimized``, so
    the same pieces, ties included: positions left to right, candidates from each position by
    increasing length, a candidate replaces the best path ending at the same place only if it
    scores strictly more; a character that starts no one-character piece is ``<unk>`` at the
    lowest score minus ``UNK_PENALTY``, and neighbouring unknowns are fused into one token, whose
    id is then looked up like any piece (``<unk>`` unless the fused text is itself a piece).

    ``keys``: the distinct pieces in code-point order (``str`` order); ``key_ids[j]``: the id of
    ``keys[j]`` (a piece listed twice takes its last id, as in ``tokenizers``); ``id_keys[i]``:
    the position in ``keys`` of the piece of id ``i``; ``scores[i]``: the score of id ``i``.
    Build it from a vocabulary with :meth:`from_pieces`.
    """

    def __init__(self, keys: list[str], key_ids: Any, id_keys: Any, scores: Any, unk_id: int):
        """``key_ids``, ``id_keys``, ``scores``: numpy arrays or sequences (checked in numpy,
        then held as flat ``array`` s, whose items index as Python numbers)."""
        import numpy as np

        key_ids, id_keys = np.asarray(key_ids, dtype=np.intc), np.asarray(id_keys, dtype=np.intc)
        scores = np.asarray(scores, dtype=np.float64)
        if len(key_ids) != len(keys) or len(id_keys) != len(scores) or not keys:
            raise ValueError(
                f"{len(keys)} pieces, {len(key_ids)} ids for them, {len(id_keys)} ids, {len(scores)} scores"
            )
        if not 0 <= unk_id < len(scores):
            raise ValueError(f"unk_id {unk_id} is not one of the {len(scores)} ids")
        ids_ok = key_ids.min() >= 0 and key_ids.max() < len(scores)
        if not ids_ok or id_keys.min() < 0 or id_keys.max() >= len(keys):
            raise ValueError("an id or a piece position is out of range")
        self.keys = keys
        self.key_ids, self.id_keys, self.scores = _ints(key_ids), _ints(id_keys), _floats(scores)
        self.unk_id = unk_id
        self.unk_score = float(scores.min()) - UNK_PENALTY
        self.rest = ""  # tokenizer.json without the vocabulary (JSON), for the saved compact form

    @classmethod
    def from_pieces(cls, pieces: Sequence[str], scores: Sequence[float], unk_id: int) -> CompactUnigram:
        """From the vocabulary by id (``tokenizer.json``'s ``[[piece, score], ...]`` split in two).

        The sort runs in numpy (code-point order, as ``str`` compares; ~2x faster than
        ``sorted``) unless a piece holds a NUL, which numpy's strings drop at the end."""
        import numpy as np

        pieces = list(pieces)
        if "\x00" in "".join(pieces):
            order = np.array(sorted(range(len(pieces)), key=pieces.__getitem__), dtype=np.intp)
        else:
            order = np.argsort(np.array(pieces), kind="stable")
        ranked = list(map(pieces.__getitem__, order.tolist()))
        differs = np.fromiter(map(ne, ranked[1:], ranked[:-1]), dtype=bool, count=len(ranked) - 1)
        last = np.append(differs, True)  # stable: of equal pieces the last is the highest id
        key_positions = np.cumsum(np.insert(differs, 0, True)) - 1  # sorted entry -> its key
        id_keys = np.empty(len(pieces), dtype=np.intc)
        id_keys[order] = key_positions
        keys = [piece for piece, keep in zip(ranked, last.tolist()) if keep]
        return cls(keys, order[last], id_keys, scores, unk_id)

    def __len__(self) -> int:
        """The number of ids (pieces listed twice count twice)."""
        return len(self.id_keys)

    def piece(self, token_id: int) -> str:
        return self.keys[self.id_keys[token_id]]

    def id_of(self, text: str) -> int | None:
        """The id of the piece ``text``, ``None`` if it is not one."""
        j = bisect_left(self.keys, text)
        return self.key_ids[j] if j < len(self.keys) and self.keys[j] == text else None

    def segment(self, text: str) -> list[tuple[int, int]]:
        """``text`` cut into pieces: (start, end) character offsets covering it in order."""
        n, keys, key_ids, scores, unk = len(text), self.keys, self.key_ids, self.scores, self.unk_id
        size = len(keys)
        best = [0.0] * (n + 1)
        start: list[int] = [-1] * (n + 1)
        chosen = [0] * (n + 1)
        for i in range(n):
            here, single = best[i], False
            for end in range(i + 1, n + 1):
                candidate = text[i:end]
                j = bisect_left(keys, candidate)
                if j == size or not keys[j].startswith(candidate):
                    break  # no piece starts with this text: none longer does either
                if keys[j] != candidate:
                    continue
                piece = key_ids[j]
                score = scores[piece] + here
                if start[end] < 0 or score > best[end]:
                    best[end], start[end], chosen[end] = score, i, piece
                single = single or end == i + 1
            if not single:
                score = self.unk_score + here
                if start[i + 1] < 0 or score > best[i + 1]:
                    best[i + 1], start[i + 1], chosen[i + 1] = score, i, unk
        return _spans(start, chosen, n, unk)

    def tokenize(self, normalized: Any) -> list[Any]:
        """A pre-tokenised split (``tokenizers.NormalizedString``) -> its ``tokenizers.Token`` s,
        offsets in bytes of the split, as the Rust model gives them."""
        from tokenizers import Token

        text, tokens, byte = str(normalized), [], 0
        for begin, end in self.segment(text):
            piece = text[begin:end]
            size = len(piece.encode("utf-8"))
            found = self.id_of(piece)
            tokens.append(Token(self.unk_id if found is None else found, piece, (byte, byte + size)))
            byte += size
        return tokens

    def pre_tokenize(self, pretokenized: Any) -> None:
        """The hook of a custom ``tokenizers`` pre-tokenizer: gives every split its tokens, so the
        placeholder model behind it is never asked."""
        pretokenized.tokenize(self.tokenize)


def _spans(start: list[int], chosen: list[int], n: int, unk: int) -> list[tuple[int, int]]:
    """The best path back from the end of ``n`` characters; a run of unknowns is one span."""
    spans: list[tuple[int, int]] = []
    end, unknown_end = n, -1
    while end > 0:
        begin = start[end]
        if chosen[end] == unk:
            unknown_end = end if unknown_end < 0 else unknown_end
        else:
            if unknown_end >= 0:
                spans.append((end, unknown_end))
                unknown_end = -1
            spans.append((begin, end))
        end = begin
    if unknown_end >= 0:
        spans.append((0, unknown_end))
    return spans[::-1]


def write_sidecar(unigram: CompactUnigram, source: Path) -> None:
    """``source``'s compact form beside it (atomically): the sorted pieces as one UTF-8 text
    separated by NUL (split back in C, ~10x faster than slicing), both id maps, the scores, the
    rest of the file and ``source``'s SHA-256. Not written for a vocabulary with a NUL inside a
    piece."""
    import numpy as np

    from clamp3.utils.io import atomic_path, file_sha256

    if "\x00" in "".join(unigram.keys):
        return
    with atomic_path(source.with_suffix(COMPACT_SUFFIX)) as tmp, open(tmp, "wb") as file:
        np.savez(
            file,
            format=np.array(SIDECAR_FORMAT),
            sha256=np.array(file_sha256(source)),
            rest=np.array(unigram.rest),
            unk_id=np.array(unigram.unk_id),
            keys=np.frombuffer("\x00".join(unigram.keys).encode("utf-8"), np.uint8),
            key_ids=np.frombuffer(unigram.key_ids, np.intc),
            id_keys=np.frombuffer(unigram.id_keys, np.intc),
            scores=np.frombuffer(unigram.scores, np.float64),
        )


def read_sidecar(source: Path) -> CompactUnigram | None:
    """The compact vocabulary from ``source``'s sidecar, if there is a readable one for this very
    file (same SHA-256); a format-1 sidecar (pieces by id) is sorted here."""
    sidecar = source.with_suffix(COMPACT_SUFFIX)
    if not sidecar.is_file():
        return None
    import numpy as np

    from clamp3.utils.io import file_sha256

    try:
        with np.load(sidecar, allow_pickle=False) as saved:
            if str(saved["sha256"]) != file_sha256(source):
                log.info("%s: made from another %s; not used", sidecar, source.name)
                return None
            unk_id, scores = int(saved["unk_id"]), saved["scores"]
            if "keys" in saved:
                keys = saved["keys"].tobytes().decode("utf-8").split("\x00")
                unigram = CompactUnigram(keys, saved["key_ids"], saved["id_keys"], scores, unk_id)
            else:
                pieces = saved["pieces"].tobytes().decode("utf-8").split("\x00")
                if len(pieces) != len(scores):
                    raise ValueError(f"{len(pieces)} pieces but {len(scores)} scores")
                unigram = CompactUnigram.from_pieces(pieces, scores, unk_id)
            unigram.rest = str(saved["rest"])
    except Exception as exc:  # unreadable (a truncated zip is BadZipFile): the JSON is the truth
        log.warning("%s: unreadable (%s); reading %s instead", sidecar, exc, source.name)
        return None
    return unigram

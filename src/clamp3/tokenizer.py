"""Text tokenisation: XLM-R's ``tokenizer.json`` through the ``tokenizers`` library.

The official code uses ``AutoTokenizer.from_pretrained("FacebookAI/xlm-roberta-base")``; its
fast tokenizer is exactly the ``tokenizer.json`` of that repository, which ``tokenizers``
loads directly (no sentencepiece, no transformers tokenizer stack). Ids: ``<s>`` = 0,
``<pad>`` = 1, ``</s>`` = 2, ``<unk>`` = 3. ``encode`` adds ``<s>`` ... ``</s>`` and never
truncates: the segmentation handles long texts, as in the official extractor.

Presets trained offline (``mini``) carry their own ``tokenizer.json`` next to the weights,
made by :func:`train_tokenizer` with the same special-token ids.

Memory: ``tokenizers`` keeps a Unigram vocabulary as a byte trie of hash maps, which for 250k
pieces costs 167-876 MB resident depending on how many prefixes the pieces share
(``benchmarks/tokenizer_memory.py``), more than the int8 text tower. From
``COMPACT_MIN_PIECES`` pieces on, the segmentation (the only part that needs the vocabulary)
runs over a Python dict instead (:class:`CompactUnigram`, the same ids, tested against
``tokenizers``); added tokens, normalisation, pre-tokenisation and ``<s>``/``</s>`` stay in
``tokenizers``. Saving such a tokenizer also writes ``tokenizer.compact.npz`` beside
``tokenizer.json`` (the pieces, scores and the rest of the file, with the SHA-256 of the
``tokenizer.json`` it belongs to): loading from it skips parsing 250k JSON entries, ~0.5 s of a
cold search. A sidecar whose hash does not match its ``tokenizer.json`` is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any
from pathlib import Path

from clamp3.config import TextTowerConfig

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


COMPACT_MIN_PIECES = 100_000  # XLM-R has 250,002; the demo's trained tokenizers a few thousand
UNK_PENALTY = 10.0  # tokenizers' Unigram: an unknown character scores the lowest piece score - 10


class TokenizerNotFound(FileNotFoundError):
    pass


class CompactUnigram:
    """The Viterbi segmentation of ``tokenizers``' Unigram model over a dict of the pieces.

    Same algorithm and order of comparisons as ``tokenizers``' ``Unigram::encode_optimized``, so
    the same pieces, ties included: positions left to right, candidates from each position by
    increasing length, a candidate replaces the best path ending at the same place only if it
    scores strictly more; a character that starts no one-character piece is ``<unk>`` at the
    lowest score minus ``UNK_PENALTY``, and neighbouring unknowns are fused into one token, whose
    id is then looked up like any piece (``<unk>`` unless the fused text is itself a piece).
    ``pieces`` / ``scores``: by id, as in ``tokenizer.json``'s vocabulary; a piece listed twice
    takes its last id, as there.
    """

    def __init__(self, pieces: list[str], scores: list[float], unk_id: int):
        self.pieces = pieces  # id -> piece, the same str objects as the dict's keys
        self.scores = scores
        self.ids: dict[str, int] = dict(zip(pieces, range(len(pieces))))  # repeated piece: last id
        self.unk_id = unk_id
        self.unk_score = min(scores) - UNK_PENALTY
        self.longest = max(map(len, pieces))
        self.rest = ""  # tokenizer.json without the vocabulary (JSON), for the saved compact form

    @classmethod
    def from_vocab(cls, vocab: Sequence[Sequence[Any]], unk_id: int) -> CompactUnigram:
        """From ``tokenizer.json``'s ``[[piece, score], ...]`` (map/zip/dict loop in C: at 250k
        pieces this is most of the tokenizer's share of a cold search)."""
        return cls(list(map(itemgetter(0), vocab)), list(map(itemgetter(1), vocab)), unk_id)

    def segment(self, text: str) -> list[tuple[int, int]]:
        """``text`` cut into pieces: (start, end) character offsets covering it in order."""
        n, ids, scores, unk = len(text), self.ids, self.scores, self.unk_id
        best = [0.0] * (n + 1)
        start: list[int] = [-1] * (n + 1)
        chosen = [0] * (n + 1)
        for i in range(n):
            here, single = best[i], False
            for end in range(i + 1, min(n, i + self.longest) + 1):
                piece = ids.get(text[i:end])
                if piece is None:
                    continue
                score = scores[piece] + here
                if start[end] < 0 or score > best[end]:
                    best[end], start[end], chosen[end] = score, i, piece
                single = single or end == i + 1
            if not single:
                score = self.unk_score + here
                if start[i + 1] < 0 or score > best[i + 1]:
                    best[i + 1], start[i + 1], chosen[i + 1] = score, i, unk
        spans: list[tuple[int, int]] = []
        end, unknown_end = n, -1
        while end > 0:  # back from the end; a run of unknowns becomes one span
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

    def tokenize(self, normalized: Any) -> list[Any]:
        """A pre-tokenised split (``tokenizers.NormalizedString``) -> its ``tokenizers.Token`` s,
        offsets in bytes of the split, as the Rust model gives them."""
        from tokenizers import Token

        text, tokens, byte = str(normalized), [], 0
        for begin, end in self.segment(text):
            piece = text[begin:end]
            size = len(piece.encode("utf-8"))
            tokens.append(Token(self.ids.get(piece, self.unk_id), piece, (byte, byte + size)))
            byte += size
        return tokens

    def pre_tokenize(self, pretokenized: Any) -> None:
        """The hook of a custom ``tokenizers`` pre-tokenizer: gives every split its tokens, so the
        placeholder model behind it is never asked."""
        pretokenized.tokenize(self.tokenize)


def _compact_tokenizer(data: dict[str, Any], min_pieces: int) -> tuple[Any, CompactUnigram] | None:
    """``tokenizer.json`` (parsed) as a ``tokenizers.Tokenizer`` whose Unigram model is a
    :class:`CompactUnigram`, or ``None`` if it is not a Unigram vocabulary of ``min_pieces`` or
    more with an ``<unk>`` and no byte fallback (those stay entirely in ``tokenizers``)."""
    model = data.get("model") or {}
    if (
        model.get("type") != "Unigram"
        or model.get("byte_fallback")
        or model.get("unk_id") is None
        or len(model.get("vocab", ())) < max(min_pieces, 1)
    ):
        return None
    unigram = CompactUnigram.from_vocab(model["vocab"], model["unk_id"])
    unigram.rest = json.dumps(dict(data, model=dict(model, vocab=[])), ensure_ascii=False)
    return _behind_tokenizers(data, unigram), unigram


def _behind_tokenizers(data: dict[str, Any], unigram: CompactUnigram) -> Any:
    """The ``tokenizers.Tokenizer`` of ``data`` (its model's vocabulary not needed) with
    ``unigram`` as the segmentation step."""
    from tokenizers import Tokenizer, pre_tokenizers

    unk = unigram.pieces[unigram.unk_id]
    specials = {token["content"]: token["id"] for token in data.get("added_tokens", [])}
    # A placeholder model that only knows the added tokens (which keep their ids) and <unk>:
    # every split reaches it already tokenised by the hook below.
    placeholder = {"type": "WordLevel", "vocab": specials | {unk: unigram.unk_id}, "unk_token": unk}
    tok = Tokenizer.from_str(json.dumps(dict(data, model=placeholder)))
    hook = pre_tokenizers.PreTokenizer.custom(unigram)
    before = tok.pre_tokenizer
    tok.pre_tokenizer = hook if before is None else pre_tokenizers.Sequence([before, hook])
    return tok


def _read_json(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as file:
        return json.load(file)


COMPACT_SUFFIX = ".compact.npz"  # tokenizer.json -> tokenizer.compact.npz


def _write_sidecar(unigram: CompactUnigram, source: Path) -> None:
    """``source``'s compact form beside it (atomically): the pieces as one UTF-8 text separated
    by NUL (split back in C, ~10x faster than slicing), the scores, the rest of the file and
    ``source``'s SHA-256. Not written for a vocabulary with a NUL inside a piece."""
    import numpy as np

    from clamp3.utils.io import atomic_path, file_sha256

    if any("\x00" in piece for piece in unigram.pieces):
        return
    with atomic_path(source.with_suffix(COMPACT_SUFFIX)) as tmp, open(tmp, "wb") as file:
        np.savez(
            file,
            sha256=np.array(file_sha256(source)),
            rest=np.array(unigram.rest),
            unk_id=np.array(unigram.unk_id),
            pieces=np.frombuffer("\x00".join(unigram.pieces).encode("utf-8"), np.uint8),
            scores=np.asarray(unigram.scores, np.float64),
        )


def _from_sidecar(source: Path) -> tuple[Any, CompactUnigram] | None:
    """The compact tokenizer from ``source``'s sidecar, if there is one for this very file."""
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
            pieces = saved["pieces"].tobytes().decode("utf-8").split("\x00")
            scores = saved["scores"].tolist()
            if len(pieces) != len(scores):
                raise ValueError(f"{len(pieces)} pieces but {len(scores)} scores")
            unigram = CompactUnigram(pieces, scores, int(saved["unk_id"]))
            unigram.rest = str(saved["rest"])
    except Exception as exc:  # unreadable (a truncated zip is BadZipFile): the JSON is the truth
        log.warning("%s: unreadable (%s); reading %s instead", sidecar, exc, source.name)
        return None
    return _behind_tokenizers(json.loads(unigram.rest), unigram), unigram


class TextTokenizer:
    """Wraps a ``tokenizers.Tokenizer``; ``encode`` returns ids with ``<s>`` and ``</s>``.
    ``compact``: the :class:`CompactUnigram` doing its segmentation, if any."""

    def __init__(self, tokenizer, source: str = "", compact: CompactUnigram | None = None):
        self._tok = tokenizer
        self.source = source
        self.compact = compact

    @classmethod
    def from_file(cls, path: str | os.PathLike, compact: bool | None = None) -> TextTokenizer:
        """``compact``: ``None`` decides by the vocabulary (a Unigram one of ``COMPACT_MIN_PIECES``
        pieces or more, see the module's docstring), ``False`` always loads it into
        ``tokenizers``, ``True`` compacts any Unigram vocabulary (tests)."""
        from tokenizers import Tokenizer

        from clamp3.utils.errors import CheckpointError

        try:
            if compact is not False:
                # the parsed JSON lives only inside this expression: the dict and scores stay
                built = _from_sidecar(Path(path)) or _compact_tokenizer(
                    _read_json(path), min_pieces=0 if compact else COMPACT_MIN_PIECES
                )
                if built is not None:
                    return cls(built[0], str(path), compact=built[1])
                if compact:
                    raise ValueError("not a Unigram vocabulary with an <unk> and no byte fallback")
            return cls(Tokenizer.from_file(str(path)), str(path))
        except Exception as exc:  # tokenizers raises a plain Exception for a malformed file
            # A model asset, not one input: stops a batch once (clamp3.encode.SETUP_ERRORS).
            raise CheckpointError(f"{path}: not a usable {TOKENIZER_FILE}: {exc}") from exc

    def __reduce__(self):
        if self.compact is not None:  # the custom hook does not pickle; the file it came from does
            return (type(self).from_file, (self.source, True))
        return super().__reduce__()

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if self.compact is not None:  # the Python hook holds the GIL: no gain from threads
            return [self.encode(text) for text in texts]
        return [list(e.ids) for e in self._tok.encode_batch(list(texts))]

    def decode(self, ids: Sequence[int]) -> str:
        if self.compact is None:
            return self._tok.decode(list(ids))
        special = {token.content for token in self._tok.get_added_tokens_decoder().values() if token.special}
        known = len(self.compact.pieces)
        pieces = [self.compact.pieces[i] if i < known else self._tok.id_to_token(i) for i in ids]
        pieces = [piece for piece in pieces if piece is not None and piece not in special]
        return self._tok.decoder.decode(pieces) if self._tok.decoder is not None else " ".join(pieces)

    @property
    def vocab_size(self) -> int:
        if self.compact is None:
            return self._tok.get_vocab_size()
        added = self._tok.get_added_tokens_decoder().values()
        return len(self.compact.pieces) + sum(token.content not in self.compact.ids for token in added)

    def save(self, directory: str | os.PathLike) -> Path:
        from clamp3.utils.io import atomic_path

        target = Path(directory) / TOKENIZER_FILE
        same = Path(self.source).resolve() == target.resolve() if self.source else False
        if not same:
            with atomic_path(target) as tmp:
                if self.compact is not None:  # the hook cannot be serialised: the file it came from
                    shutil.copyfile(self.source, tmp)
                else:
                    self._tok.save(str(tmp))
        if self.compact is not None:
            _write_sidecar(self.compact, target)
        return target


def load_tokenizer(config: TextTowerConfig, directory: str | os.PathLike | None = None) -> TextTokenizer:
    """The tokenizer saved next to the weights (``directory``: a model directory or the folder
    of an official checkpoint), else ``config.tokenizer`` through :func:`clamp3.hub.fetch`
    (cache first; offline, one ``TokenizerNotFound`` within seconds)."""
    if directory is not None and (Path(directory) / TOKENIZER_FILE).is_file():
        return TextTokenizer.from_file(Path(directory) / TOKENIZER_FILE)
    if config.tokenizer == "local":
        if directory is None:  # a model built in memory (from_preset, training)
            raise TokenizerNotFound(
                "this model has its own tokenizer and was not loaded from a folder holding it; "
                "pass one: Clamp3Pipeline(model, tokenizer=TextTokenizer.from_file(...))"
            )
        raise TokenizerNotFound(
            f"{directory}: this model's tokenizer should be saved next to its weights as "
            f"{TOKENIZER_FILE}, and it is not there"
        )
    from clamp3.hub import fetch

    beside = (
        f"and put it next to the model weights ({directory}) as {TOKENIZER_FILE}"
        if directory
        else (f"and put it next to the model weights as {TOKENIZER_FILE}")
    )
    path = fetch(
        config.tokenizer, TOKENIZER_FILE, what="the text tokenizer", error=TokenizerNotFound, instead=beside
    )
    return TextTokenizer.from_file(path)


def copy_tokenizer_files(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    source = Path(src) / TOKENIZER_FILE
    if source.is_file() and Path(src).resolve() != Path(dst).resolve():
        shutil.copyfile(source, Path(dst) / TOKENIZER_FILE)


# The Unigram trainer of `tokenizers` is not deterministic: it iterates hash maps, so two runs on
# the same texts give the same pieces with the same scores, but (1) pieces of equal score in
# another order (other ids) and (2) the characters it adds last for coverage, whose scores step
# down by 1e-4 in iteration order, to other characters. Either changes what a model trains on.
SCORE_DECIMALS = 9  # trained scores agree to ~1e-15 between runs; rounding removes the noise
COVERAGE_STEP = 1e-4  # the trainer's score step between the coverage characters


def canonical_vocab(vocab: list[list[Any]], n_special: int) -> list[list[Any]]:
    """The same Unigram vocabulary ``[[piece, score], ...]`` in an order and with scores that no
    longer depend on the trainer's iteration order: the first ``n_special`` entries stay; the rest
    sorted by rounded score (descending), then by piece; the final run of pieces whose scores step
    down by at most ``COVERAGE_STEP`` (the coverage characters) share their mean score and are
    sorted by piece."""
    pieces = sorted(
        ([piece, round(float(score), SCORE_DECIMALS)] for piece, score in vocab[n_special:]),
        key=lambda entry: (-entry[1], entry[0]),
    )
    start = len(pieces) - 1  # the first entry of the final run
    while start > 0 and pieces[start - 1][1] - pieces[start][1] <= 1.5 * COVERAGE_STEP:
        start -= 1
    if len(pieces) - start > 1:
        tail = pieces[start:]
        mean = round(sum(sorted(score for _, score in tail)) / len(tail), SCORE_DECIMALS)
        pieces[start:] = sorted([piece, mean] for piece, _ in tail)
    return [list(entry) for entry in vocab[:n_special]] + pieces


def _canonical(tok: Any) -> Any:
    """``tok`` rebuilt with :func:`canonical_vocab` (special tokens keep their ids)."""
    from tokenizers import Tokenizer

    data = json.loads(tok.to_str())
    data["model"]["vocab"] = canonical_vocab(data["model"]["vocab"], len(SPECIAL_TOKENS))
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False))


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> TextTokenizer:
    """A multilingual Unigram tokenizer (the sentencepiece model family XLM-R uses) trained on
    ``texts``, with XLM-R's special-token ids and ``<s> ... </s>`` added by ``encode``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    # No progress output: the trainer writes it to stdout, which `clamp3 demo > table.txt` captures.
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        unk_token="<unk>",
        max_piece_length=12,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok = _canonical(tok)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    for i, token in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(token) != i:
            raise RuntimeError(f"tokenizer training put {token} at {tok.token_to_id(token)}, not {i}")
    return TextTokenizer(tok, "trained")

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
runs over the sorted pieces instead (:class:`clamp3.tokenizer.compact.CompactUnigram`, the same
ids, tested against ``tokenizers``); added tokens, normalisation, pre-tokenisation and
``<s>``/``</s>`` stay in ``tokenizers``. Saving such a tokenizer also writes
``tokenizer.compact.npz`` beside ``tokenizer.json`` (:mod:`clamp3.tokenizer.compact`): loading
from it skips parsing 250k JSON entries and sorting them, ~1 s of a cold search. A sidecar whose
hash does not match its ``tokenizer.json`` is ignored.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

from clamp3.config import TextTowerConfig
from clamp3.tokenizer.compact import CompactUnigram, read_sidecar, write_sidecar

TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


COMPACT_MIN_PIECES = 100_000  # XLM-R has 250,002; the demo's trained tokenizers a few thousand


class TokenizerNotFound(FileNotFoundError):
    pass


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
    vocab = model["vocab"]
    pieces, scores = list(map(itemgetter(0), vocab)), list(map(itemgetter(1), vocab))
    unigram = CompactUnigram.from_pieces(pieces, scores, model["unk_id"])
    unigram.rest = json.dumps(dict(data, model=dict(model, vocab=[])), ensure_ascii=False)
    return _behind_tokenizers(data, unigram), unigram


def _behind_tokenizers(data: dict[str, Any], unigram: CompactUnigram) -> Any:
    """The ``tokenizers.Tokenizer`` of ``data`` (its model's vocabulary not needed) with
    ``unigram`` as the segmentation step."""
    from tokenizers import Tokenizer, pre_tokenizers

    unk = unigram.piece(unigram.unk_id)
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


def _from_sidecar(source: Path) -> tuple[Any, CompactUnigram] | None:
    """The compact tokenizer from ``source``'s sidecar, if there is one for this very file."""
    unigram = read_sidecar(source)
    if unigram is None:
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

    @property
    def vocab_size(self) -> int:
        """How many ids this tokenizer can give (0 .. vocab_size - 1, added tokens included)."""
        if self.compact is None:
            return int(self._tok.get_vocab_size(with_added_tokens=True))
        return max(len(self.compact), max(self._tok.get_added_tokens_decoder(), default=-1) + 1)

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
        known = len(self.compact)
        pieces = [self.compact.piece(i) if i < known else self._tok.id_to_token(i) for i in ids]
        pieces = [piece for piece in pieces if piece is not None and piece not in special]
        return self._tok.decoder.decode(pieces) if self._tok.decoder is not None else " ".join(pieces)

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
            write_sidecar(self.compact, target)
        return target


def load_tokenizer(config: TextTowerConfig, directory: str | os.PathLike | None = None) -> TextTokenizer:
    """The tokenizer saved next to the weights (``directory``: a model directory or the folder
    of an official checkpoint), else ``config.tokenizer`` through :func:`clamp3.hub.fetch`
    (cache first; offline, one ``TokenizerNotFound`` within seconds). A tokenizer that gives ids
    beyond the text tower's vocabulary (``config.vocab_size``) is another model's: ``CheckpointError``."""
    if directory is not None and (Path(directory) / TOKENIZER_FILE).is_file():
        return _for_tower(TextTokenizer.from_file(Path(directory) / TOKENIZER_FILE), config)
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
    return _for_tower(TextTokenizer.from_file(path), config)


def _for_tower(tokenizer: TextTokenizer, config: TextTowerConfig) -> TextTokenizer:
    # Caught here, once: otherwise every text with a high id fails inside the embedding lookup
    # with torch's "index out of range in self".
    if tokenizer.vocab_size > config.vocab_size:
        from clamp3.utils.errors import CheckpointError

        raise CheckpointError(
            f"{tokenizer.source}: gives ids up to {tokenizer.vocab_size - 1} but the text tower's "
            f"vocabulary holds {config.vocab_size}: this is another model's tokenizer"
        )
    return tokenizer


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


CJK_CHARACTERS = r"[\p{Han}\u3000-\u303f\uff00-\uffef]"  # Han, CJK punctuation, full-width forms


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> TextTokenizer:
    """A multilingual Unigram tokenizer (the sentencepiece model family XLM-R uses) trained on
    ``texts``, with XLM-R's special-token ids and ``<s> ... </s>`` added by ``encode``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    # Each Chinese character is a word of its own, as in multilingual BERT: Chinese has no
    # spaces, so Metaspace alone hands Unigram whole sentences, and it learns template phrases
    # as pieces (the key inside 本曲以D小调写成, unseen by the model as a key of its own).
    cjk = pre_tokenizers.Split(Regex(CJK_CHARACTERS), behavior="isolated")
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), cjk])
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

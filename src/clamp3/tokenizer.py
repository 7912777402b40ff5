"""Text tokenisation: XLM-R's ``tokenizer.json`` through the ``tokenizers`` library.

The official code uses ``AutoTokenizer.from_pretrained("FacebookAI/xlm-roberta-base")``; its
fast tokenizer is exactly the ``tokenizer.json`` of that repository, which ``tokenizers``
loads directly (no sentencepiece, no transformers tokenizer stack). Ids: ``<s>`` = 0,
``<pad>`` = 1, ``</s>`` = 2, ``<unk>`` = 3. ``encode`` adds ``<s>`` ... ``</s>`` and never
truncates: the segmentation handles long texts, as in the official extractor.

Presets trained offline (``mini``) carry their own ``tokenizer.json`` next to the weights,
made by :func:`train_tokenizer` with the same special-token ids.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from typing import Any
from pathlib import Path

from clamp3.config import TextTowerConfig

TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


class TokenizerNotFound(FileNotFoundError):
    pass


class TextTokenizer:
    """Wraps a ``tokenizers.Tokenizer``; ``encode`` returns ids with ``<s>`` and ``</s>``."""

    def __init__(self, tokenizer, source: str = ""):
        self._tok = tokenizer
        self.source = source

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TextTokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), str(path))

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(e.ids) for e in self._tok.encode_batch(list(texts))]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids))

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def save(self, directory: str | os.PathLike) -> Path:
        from clamp3.utils.io import atomic_path

        target = Path(directory) / TOKENIZER_FILE
        with atomic_path(target) as tmp:
            self._tok.save(str(tmp))
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

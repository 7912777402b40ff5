"""The offline demo corpus: pieces of music21's corpus as aligned sheet music (MusicXML,
interleaved ABC), MIDI (and MTF), synthesized audio and template-generated multilingual texts,
with deterministic splits, M4-RAG-style JSONL and WikiMT-X-like evaluation folders.

Needs the ``corpus`` extra (music21, mido, soundfile). Audio uses FluidSynth with a
General-MIDI soundfont when installed, else a built-in additive synthesizer.
"""

from clamp3.corpus.assemble import corpus_piece_ids
from clamp3.corpus.build import BuildSummary, build_corpus
from clamp3.corpus.options import BuildOptions, ConfigError
from clamp3.corpus.piece import build_piece
from clamp3.corpus.select import PieceRef, select_pieces
from clamp3.corpus.texts import LANGUAGES, train_corpus_tokenizer, write_texts

__all__ = [
    "LANGUAGES",
    "BuildOptions",
    "BuildSummary",
    "ConfigError",
    "PieceRef",
    "build_corpus",
    "build_piece",
    "corpus_piece_ids",
    "select_pieces",
    "train_corpus_tokenizer",
    "write_texts",
]

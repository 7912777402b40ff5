"""Audio tower: a BERT over feature rows (one row per 5-second window), trained from scratch.

The rows go in as ``inputs_embeds``, so BERT adds its learned positions (``max_positions`` = the
segment length, 128 officially), the token-type-0 embedding and its embedding LayerNorm.
"""

from __future__ import annotations

from transformers import BertModel

from clamp3.config import EncoderConfig
from clamp3.towers.bert import build_bert


def build_audio_tower(enc: EncoderConfig) -> BertModel:
    """Official name: ``audio_model``. Input (B, L, hidden) rows; output last hidden state."""
    return build_bert(enc)

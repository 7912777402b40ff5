"""Text tower: XLM-RoBERTa (official: ``FacebookAI/xlm-roberta-base``), built from its
configuration; weights come from the CLaMP 3 checkpoint, not from the hub."""

from __future__ import annotations

from transformers import XLMRobertaConfig, XLMRobertaModel

from clamp3.config import EncoderConfig
from clamp3.towers.bert import encoder_kwargs


def build_text_tower(enc: EncoderConfig, vocab_size: int, pad_token_id: int = 1) -> XLMRobertaModel:
    """Official name: ``text_model``. Input ids (B, L) with ``<s>``/``</s>``; pads = ``pad_token_id``.

    Positions count from ``pad_token_id + 1`` for real tokens (XLM-R convention), which
    transformers derives from the ids, so right-padding does not move any real token.
    """
    config = XLMRobertaConfig(
        vocab_size=vocab_size,
        pad_token_id=pad_token_id,
        bos_token_id=0,
        eos_token_id=2,
        **encoder_kwargs(enc),
    )
    return XLMRobertaModel(config, add_pooling_layer=False)

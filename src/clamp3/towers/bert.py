"""BERT encoder construction shared by the symbolic and audio towers."""

from __future__ import annotations

from transformers import BertConfig, BertModel

from clamp3.config import EncoderConfig


def encoder_kwargs(enc: EncoderConfig) -> dict:
    """The transformers config arguments shared by BERT and XLM-R encoders."""
    return {
        "hidden_size": enc.hidden_size,
        "num_hidden_layers": enc.num_layers,
        "num_attention_heads": enc.num_heads,
        "intermediate_size": enc.intermediate_size,
        "max_position_embeddings": enc.max_positions,
        "type_vocab_size": enc.type_vocab_size,
        "layer_norm_eps": enc.layer_norm_eps,
        "hidden_dropout_prob": enc.dropout,
        "attention_probs_dropout_prob": enc.attention_dropout,
        "hidden_act": "gelu",
    }


def bert_config(enc: EncoderConfig, vocab_size: int = 1) -> BertConfig:
    """transformers ``BertConfig`` for an encoder fed through ``inputs_embeds``.

    ``vocab_size=1`` as the official code: the word-embedding table exists (1 x hidden) but is
    never used because the towers always pass ``inputs_embeds``.
    """
    return BertConfig(vocab_size=vocab_size, **encoder_kwargs(enc))


def build_bert(enc: EncoderConfig) -> BertModel:
    """A BertModel without the pooler (stored in official checkpoints, never used)."""
    return BertModel(bert_config(enc), add_pooling_layer=False)

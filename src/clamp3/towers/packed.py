"""Packed (variable-length) inference through the towers' own transformers modules.

The segments of a batch are concatenated along one token axis with no padding: every dense
layer (Q/K/V, attention output, feed-forward, projection) is one matrix product over the real
tokens of all segments, so short segments no longer make small, slow products and padding
costs nothing. Attention stays inside each segment (block-diagonal): segments are packed
longest first, so segments of equal length sit next to each other and each such run is one
``scaled_dot_product_attention`` call over a (n, heads, length, head_dim) view, without a mask.

The forward walks the existing ``BertModel`` / ``XLMRobertaModel`` submodules and uses their
parameters as they are (no copies, no new parameters, state-dict names unchanged), so autograd
trains the same weights through it. Dropout runs where the transformers forward runs it (the
modules' own dropout layers, attention-probability dropout inside the attention call), so in
training mode the two forwards draw from the same distribution; with dropout off they agree to
float rounding. Positions restart at every segment, as in the padded forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Packing:
    """Layout of packed segments: ``lengths[i]`` tokens of segment ``i`` start at ``starts[i]``.

    ``runs`` lists ``(first token, segment count, length)`` for each run of consecutive segments
    of equal length (one attention call each); ``positions`` (T,) int64 is each token's index
    inside its segment and ``segment_ids`` (T,) int64 its segment.
    """

    lengths: tuple[int, ...]
    starts: tuple[int, ...]
    runs: tuple[tuple[int, int, int], ...]
    positions: torch.Tensor
    segment_ids: torch.Tensor

    @property
    def total(self) -> int:
        return self.starts[-1] + self.lengths[-1] if self.lengths else 0

    @classmethod
    def of(cls, lengths: list[int], device: torch.device | str = "cpu") -> Packing:
        """The packing of segments of ``lengths`` (each >= 1) in the given order."""
        if not lengths or min(lengths) < 1:
            raise ValueError(f"packed segments need lengths >= 1, got {lengths}")
        starts, runs, cursor = [], [], 0
        for length in lengths:
            starts.append(cursor)
            if runs and runs[-1][2] == length:
                first, count, _ = runs[-1]
                runs[-1] = (first, count + 1, length)
            else:
                runs.append((cursor, 1, length))
            cursor += length
        counts = torch.tensor(lengths, dtype=torch.long)
        segment_ids = torch.repeat_interleave(torch.arange(len(lengths)), counts)
        begin = torch.repeat_interleave(torch.tensor(starts, dtype=torch.long), counts)
        positions = torch.arange(cursor) - begin
        return cls(tuple(lengths), tuple(starts), tuple(runs), positions.to(device), segment_ids.to(device))


def unpad(inputs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, Packing, torch.Tensor]:
    """A padded batch (B, L, ...) and its mask (B, L) -> (packed real tokens (T, ...), their
    ``Packing``, ``order`` (B,) int64): packed segment ``i`` is batch row ``order[i]``.

    Rows are packed longest first (one attention call per distinct length). The mask must be
    the padded forward's: each row's real tokens first, then padding, at least one real token
    (the padded forward counts positions from the row's start, so a gap would change them).
    """
    real = mask.bool()
    lengths = real.sum(1)
    prefix = torch.arange(real.shape[1], device=real.device) < lengths[:, None]
    if lengths.numel() == 0 or int(lengths.min()) < 1 or not torch.equal(real, prefix):
        raise ValueError("packing needs masks of real tokens first, then padding, >= 1 real token per row")
    order = torch.argsort(lengths, descending=True, stable=True)
    flat = inputs[order][real[order]]
    return flat, Packing.of(lengths[order].tolist(), inputs.device), order


def block_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    packing: Packing,
    heads: int,
    scale: float,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Attention of packed (T, H) projections within each segment -> context (T, H).

    The runs' contexts are concatenated, not copied into a preallocated tensor: an in-place
    copy per run would cost a masked copy of the whole gradient per run in the backward pass.
    """
    hidden = query.shape[1]
    head_dim = hidden // heads
    contexts = []
    for first, count, length in packing.runs:
        rows, shape = slice(first, first + count * length), (count, length, heads, head_dim)
        q, k, v = (x[rows].view(shape).transpose(1, 2) for x in (query, key, value))
        context = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)
        contexts.append(context.transpose(1, 2).reshape(count * length, hidden))
    return contexts[0] if len(contexts) == 1 else torch.cat(contexts)


def packed_layer(layer: nn.Module, hidden: torch.Tensor, packing: Packing) -> torch.Tensor:
    """One post-LayerNorm ``BertLayer`` / ``XLMRobertaLayer`` on packed hidden states (T, H)."""
    attn = layer.attention.self
    context = block_attention(
        attn.query(hidden),
        attn.key(hidden),
        attn.value(hidden),
        packing,
        attn.num_attention_heads,
        attn.scaling,
        attn.dropout.p if attn.training else 0.0,
    )
    out = layer.attention.output
    attended = out.LayerNorm(out.dropout(out.dense(context)) + hidden)
    ffn = layer.output
    return ffn.LayerNorm(ffn.dropout(ffn.dense(layer.intermediate(attended))) + attended)


def check_packable(encoder: nn.Module) -> None:
    """Raise unless ``encoder`` is a plain bidirectional encoder (what the packed forward
    reproduces): no decoder, no cross-attention, no feed-forward chunking, absolute positions."""
    config = encoder.config
    if config.is_decoder or config.add_cross_attention or config.chunk_size_feed_forward:
        raise ValueError("the packed forward supports plain encoders only")
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise ValueError("the packed forward supports absolute position embeddings only")


def packed_encoder(encoder: nn.Module, embeds: torch.Tensor, packing: Packing) -> torch.Tensor:
    """Embedding LayerNorm'd inputs (T, H) through every layer of ``encoder.encoder`` -> (T, H)."""
    hidden = embeds
    for layer in encoder.encoder.layer:
        hidden = packed_layer(layer, hidden, packing)
    return hidden


def bert_embeddings(encoder: nn.Module, inputs_embeds: torch.Tensor, packing: Packing) -> torch.Tensor:
    """BERT embeddings of packed rows (T, H): + token type 0 + learned position -> LayerNorm.

    The padded forward takes token types from a zero buffer (type 0) and positions 0..l-1 per
    segment; the additions keep its order.
    """
    emb = encoder.embeddings
    embeddings = inputs_embeds + emb.token_type_embeddings.weight[0]
    embeddings = embeddings + emb.position_embeddings(packing.positions)
    return emb.dropout(emb.LayerNorm(embeddings))


def xlmr_embeddings(encoder: nn.Module, input_ids: torch.Tensor, packing: Packing) -> torch.Tensor:
    """XLM-R embeddings of packed ids (T,): word + token type 0 + position -> LayerNorm.

    Positions follow transformers' ``create_position_ids_from_input_ids`` within each segment:
    the running count of non-pad tokens, plus ``padding_idx``, and ``padding_idx`` on a pad id.
    """
    emb = encoder.embeddings
    pad = emb.padding_idx
    real = input_ids.ne(pad).long()
    running = torch.cumsum(real, 0)
    # Running count before each segment, subtracted so counting restarts per segment.
    before = running - real
    offsets = before[torch.tensor(packing.starts, device=input_ids.device)]
    positions = (running - offsets[packing.segment_ids]) * real + pad
    embeddings = emb.word_embeddings(input_ids) + emb.token_type_embeddings.weight[0]
    embeddings = embeddings + emb.position_embeddings(positions)
    return emb.dropout(emb.LayerNorm(embeddings))


def segment_means(hidden: torch.Tensor, packing: Packing) -> torch.Tensor:
    """Mean of packed hidden states (T, H) over each segment -> (S, H) float32 (the padded
    path's masked mean)."""
    hidden = hidden.float()
    sums = hidden.new_zeros(len(packing.lengths), hidden.shape[1]).index_add_(0, packing.segment_ids, hidden)
    counts = torch.tensor(packing.lengths, dtype=torch.float32, device=hidden.device)
    return sums / counts[:, None]


def packed_encoder_of(tower: nn.Module) -> nn.Module:
    """The transformers encoder inside a tower (the text ``XLMRobertaModel``, the symbolic
    ``PatchEncoder``'s ``base``, the audio ``BertModel``), checked by :func:`check_packable`."""
    from transformers import BertModel, XLMRobertaModel

    from clamp3.towers.symbolic import PatchEncoder

    if isinstance(tower, PatchEncoder):
        encoder = tower.base
    elif isinstance(tower, (XLMRobertaModel, BertModel)):
        encoder = tower
    else:
        raise TypeError(f"no packed forward for {type(tower).__name__}")
    check_packable(encoder)
    return encoder


def packed_forward(tower: nn.Module, inputs: torch.Tensor, packing: Packing) -> torch.Tensor:
    """Last hidden states (T, H) of a tower for packed inputs of ``packing``'s segments.

    ``inputs``: (T,) token ids for the text tower (an ``XLMRobertaModel``), (T, patch_size) ids
    for the symbolic ``PatchEncoder``, (T, H) float rows for the audio ``BertModel``.
    """
    from transformers import XLMRobertaModel

    from clamp3.towers.symbolic import PatchEncoder

    if inputs.shape[0] != packing.total:
        raise ValueError(f"packed inputs have {inputs.shape[0]} rows, the packing {packing.total}")
    encoder = packed_encoder_of(tower)
    if isinstance(tower, PatchEncoder):
        embeds = bert_embeddings(encoder, tower.embed_patches(inputs), packing)
    elif isinstance(tower, XLMRobertaModel):
        embeds = xlmr_embeddings(encoder, inputs, packing)
    else:
        embeds = bert_embeddings(encoder, inputs.to(encoder.embeddings.LayerNorm.weight.dtype), packing)
    return packed_encoder(encoder, embeds, packing)

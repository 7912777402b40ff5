"""Properties of the official segmentation and pooling."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from clamp3.segments import join_unpooled, pool_segments, segment_item


@given(n=st.integers(1, 3000), length=st.integers(1, 600))
def test_segments_cover_the_item_and_weights_sum_to_n(n, length):
    segments = segment_item(n, length)
    assert segments[0].start == 0 and segments[-1].end == n
    assert all(0 < s.length <= length for s in segments)
    assert sum(s.keep for s in segments) == n
    assert sum(s.weight for s in segments) == n
    assert len(segments) == -(-n // length)
    for s in segments[:-1]:
        assert s.length == length and s.weight == length


def test_known_cases():
    assert [(s.start, s.end, s.weight) for s in segment_item(560, 512)] == [(0, 512, 512), (48, 560, 48)]
    assert [(s.start, s.end, s.weight) for s in segment_item(1024, 512)] == [(0, 512, 512), (512, 1024, 512)]
    assert [(s.start, s.end, s.weight) for s in segment_item(50, 512)] == [(0, 50, 50)]


def test_pool_and_join():
    segs = segment_item(5, 3)  # [0,3) w3, [2,5) w2 keep 2
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(pool_segments(vectors, segs), [0.6, 0.4])
    hidden = [np.arange(3)[:, None] * np.ones((1, 2)), 10 + np.arange(3)[:, None] * np.ones((1, 2))]
    joined = join_unpooled(hidden, segs)
    assert joined[:, 0].tolist() == [0, 1, 2, 11, 12]


@given(
    lengths=st.lists(st.integers(1, 512), min_size=1, max_size=200),
    batch_size=st.integers(1, 64),
)
def test_batch_plan_covers_every_piece_once_with_little_padding(lengths, batch_size):
    from clamp3.embedding import plan_batches

    batches = plan_batches(lengths, batch_size)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        slots = len(batch) * max(lengths[i] for i in batch)
        assert slots - sum(lengths[i] for i in batch) <= 0.1 * slots or len(batch) == 1


def test_batch_plan_keeps_a_long_segment_away_from_short_ones():
    from clamp3.embedding import plan_batches

    batches = plan_batches([512, 60, 61, 59, 500, 62], batch_size=16)
    assert batches == [[0, 4], [5, 2, 1, 3]]

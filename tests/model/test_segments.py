"""Properties of the official segmentation and pooling."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from clamp3.segments import embed_segmented, join_unpooled, pool_segments, segment_item


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


def test_embed_segmented_runs_every_piece_once_in_item_order_and_pools_per_item():
    items = [np.arange(5, dtype=np.float32)[:, None], np.arange(2, dtype=np.float32)[:, None] + 100]
    calls = []

    def run(pieces):  # a "tower" whose vector is the piece's first row and whose rows are itself
        calls.append([p[:, 0].tolist() for p in pieces])
        return [p[0] for p in pieces] if pooled else [p for p in pieces]

    pooled = True
    vectors = embed_segmented(items, 3, True, run)
    assert calls == [[[0, 1, 2], [2, 3, 4], [100, 101]]]  # one call: [0,3), [2,5) of item 0, then item 1
    np.testing.assert_allclose(vectors[0], [(3 * 0 + 2 * 2) / 5])  # weights 3 and 2
    np.testing.assert_allclose(vectors[1], [100])
    pooled = False
    rows = embed_segmented(items, 3, False, run)
    assert [r[:, 0].tolist() for r in rows] == [[0, 1, 2, 3, 4], [100, 101]]
    assert embed_segmented([], 3, True, run) == [] and len(calls) == 2  # no items: no call

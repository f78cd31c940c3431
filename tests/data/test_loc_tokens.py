from hypothesis import given
from hypothesis import strategies as st

from inspect_core.data.loc_tokens import LOC_BINS, decode_box, dequantise, encode_box, parse_loc_values, quantise

sizes = st.integers(min_value=1, max_value=8192)


@given(size=sizes, data=st.data())
def test_pixel_round_trip_error_is_within_one_bin(size: int, data: st.DataObject) -> None:
    value = data.draw(st.floats(min_value=0, max_value=size, allow_nan=False))
    restored = dequantise(quantise(value, size), size)
    # Rounding costs at most half a bin; only the clip of the far edge (value -> 999) costs a full one.
    limit = size / LOC_BINS if value / size * LOC_BINS > LOC_BINS - 0.5 else size / (2 * LOC_BINS)
    assert abs(restored - value) <= limit + 1e-9


@given(size=sizes, bin_index=st.integers(min_value=0, max_value=LOC_BINS - 1))
def test_bin_round_trip_is_exact(size: int, bin_index: int) -> None:
    assert quantise(dequantise(bin_index, size), size) == bin_index


@given(width=sizes, height=sizes, data=st.data())
def test_box_round_trip(width: int, height: int, data: st.DataObject) -> None:
    xs = sorted(data.draw(st.lists(st.floats(0, width, allow_nan=False), min_size=2, max_size=2)))
    ys = sorted(data.draw(st.lists(st.floats(0, height, allow_nan=False), min_size=2, max_size=2)))
    box = (xs[0], ys[0], xs[1], ys[1])
    tokens = encode_box(box, width, height)
    bins = parse_loc_values(tokens)
    assert len(bins) == 4 and all(0 <= b < LOC_BINS for b in bins)
    decoded = decode_box(bins, width, height)
    assert encode_box(decoded, width, height) == tokens
    for original, restored, size in zip(box, decoded, (width, height, width, height)):
        assert abs(original - restored) <= size / LOC_BINS + 1e-9


def test_encoding_follows_the_spec() -> None:
    # normalise by size, x1000, round, clip to 0-999
    assert encode_box((0, 0, 640, 480), 640, 480) == "<loc_0><loc_0><loc_999><loc_999>"
    assert quantise(100.4, 1000) == 100 and quantise(100.6, 1000) == 101
    assert quantise(-5, 100) == 0


def test_dequantise_rejects_out_of_range() -> None:
    import pytest

    with pytest.raises(ValueError, match="outside 0-999"):
        dequantise(1000, 100)

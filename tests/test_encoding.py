import numpy as np
import pytest

from bstdg.encoding import encode_latency, shift_events, times_to_events


def test_latency_code_values():
    t = encode_latency(np.array([0, 255, 128, 1], np.uint8), t_max=256)
    np.testing.assert_array_equal(t, [256, 0, 127, 254])
    t = encode_latency(np.array([0.0, 1.0, 0.5, 0.05]), t_max=11, floor=0.1)
    np.testing.assert_array_equal(t, [11, 0, 5, 11])


def test_latency_code_rejects_out_of_range():
    with pytest.raises(ValueError):
        encode_latency(np.array([1.5]), 10)
    with pytest.raises(ValueError):
        encode_latency(np.array([0.5]), 1)


def test_events_are_time_sorted_and_drop_silent_units():
    times = np.array([[5, 10, 0, 3], [10, 10, 10, 10], [1, 1, 0, 9]])
    ev = times_to_events(times, t_max=10)
    np.testing.assert_array_equal(ev.ptr, [0, 3, 3, 7])
    np.testing.assert_array_equal(ev.times, [0, 3, 5, 0, 1, 1, 9])
    np.testing.assert_array_equal(ev.units, [2, 3, 0, 2, 0, 1, 3])
    sub = ev.take(np.array([2, 0]))
    np.testing.assert_array_equal(sub.ptr, [0, 4, 7])
    np.testing.assert_array_equal(sub.units, [2, 0, 1, 3, 2, 3, 0])
    raster = ev.rasters(10)
    assert raster.shape == (3, 10, 4) and raster.sum() == 7 and raster[0, 5, 0] == 1


def test_shift_events_moves_pixels_and_drops_what_leaves_the_image():
    # two samples on a 2 x 3 x 4 grid (2 maps of 3 rows x 4 columns): unit (c * 3 + y) * 4 + x
    times = np.full((2, 24), 9)
    times[0, [0, 5, 23]] = [0, 1, 2]  # (c, y, x) = (0, 0, 0), (0, 1, 1), (1, 2, 3)
    times[1, [13]] = [4]  # (1, 0, 1)
    ev = times_to_events(times, t_max=9)
    moved = shift_events(ev, (2, 3, 4), dy=np.array([1, -1]), dx=np.array([1, 0]))
    # sample 0 moves down-right: (0,0,0) -> (0,1,1) = 5, (0,1,1) -> (0,2,2) = 10, (1,2,3) leaves
    # sample 1 moves up: (1,0,1) leaves the image
    np.testing.assert_array_equal(moved.ptr, [0, 2, 2])
    np.testing.assert_array_equal(moved.units, [5, 10])
    np.testing.assert_array_equal(moved.times, [0, 1])
    same = shift_events(ev, (2, 3, 4), np.zeros(2, int), np.zeros(2, int))
    np.testing.assert_array_equal(same.units, ev.units)
    np.testing.assert_array_equal(same.ptr, ev.ptr)
    flat = shift_events(ev, (6, 4), dy=np.array([1, -1]), dx=np.array([1, 0]))  # one 6 x 4 map
    np.testing.assert_array_equal(flat.units, [5, 10, 9])  # (5,3) -> (6,4) leaves; (3,1) -> (2,1)
    with pytest.raises(ValueError, match="input shape 1x3x4 does not match 24 inputs"):
        shift_events(ev, (3, 4), np.zeros(2, int), np.zeros(2, int))


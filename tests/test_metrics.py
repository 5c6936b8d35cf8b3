"""The prediction rule, including its tie cases."""

import numpy as np

from bstdg.metrics import correct, decide

T = 10


def test_earliest_spike_wins():
    d = decide(np.array([[5, 3, 7]]), np.array([[9, 1, 9]]), T)
    assert d.prediction[0] == 1 and not d.tie[0] and d.time[0] == 3


def test_same_time_broken_by_potential():
    d = decide(np.array([[3, 3, 7]]), np.array([[4, 6, 9]]), T)
    assert d.prediction[0] == 1 and not d.tie[0]


def test_full_tie_reports_lower_index_and_is_never_correct():
    d = decide(np.array([[3, 3, 7]]), np.array([[5, 5, 9]]), T)
    assert d.prediction[0] == 0 and d.tie[0]
    assert not correct(d, np.array([0]))[0]


def test_no_output_spike_uses_potential_at_t_max():
    d = decide(np.array([[T, T, T]]), np.array([[1, -2, 3]]), T)
    assert d.prediction[0] == 2 and not d.tie[0] and d.time[0] == T
    d = decide(np.array([[T, T, T]]), np.array([[3, -2, 3]]), T)
    assert d.tie[0] and not correct(d, np.array([0]))[0]


def test_batch_accuracy():
    times = np.array([[1, 2], [2, 1], [1, 1], [T, T]])
    pot = np.array([[0, 0], [0, 0], [2, 2], [0, 1]])
    d = decide(times, pot, T)
    np.testing.assert_array_equal(correct(d, np.array([0, 1, 0, 1])), [True, True, False, True])

"""Architecture specs: parsing, shapes, round trips, one-line errors."""

import numpy as np
import pytest

from bstdg.arch import FC, Architecture, Conv, Pool, input_order, parse_layers
from bstdg.errors import BstdgError


def test_parse_and_shapes():
    arch = Architecture.parse("conv16k5,pool2,conv32k3p1,pool2,fc600", (1, 28, 28), 10)
    assert arch.layers == (Conv(16, 5), Pool(2), Conv(32, 3, padding=1), Pool(2), FC(600))
    assert arch.shapes == ((16, 24, 24), (16, 12, 12), (32, 12, 12), (32, 6, 6), (600,), (10,))
    assert arch.sizes == (784, 9216, 2304, 4608, 1152, 600, 10)
    assert str(arch) == "conv16k5,pool2,conv32k3p1,pool2,fc600"
    assert Architecture.from_dict(arch.to_dict()) == arch
    assert Architecture.parse(str(arch), (1, 28, 28), 10) == arch
    s = Architecture.parse("conv8k3s2p1,pool3", (2, 15, 17), 4)
    assert s.shapes == ((8, 8, 9), (8, 2, 3), (4,))
    assert str(s.layers[0]) == "conv8k3s2p1"
    assert Architecture.parse("conv4k3", (28, 28), 10).input_shape == (1, 28, 28)  # (H, W): one channel


def test_hidden_shorthand_is_fc():
    assert parse_layers("600") == (FC(600),)
    assert parse_layers("600,300") == parse_layers("fc600,fc300") == parse_layers([600, 300])
    arch = Architecture.parse([600], (784,), 10)
    assert arch.is_fc and arch.sizes == (784, 600, 10)


@pytest.mark.parametrize("spec, shape, match", [
    ("conv16", (1, 28, 28), "bad layer 'conv16'"),
    ("conv16k5,,fc10", (1, 28, 28), "empty layer"),
    ("conv0k3", (1, 28, 28), "channels must be a positive"),
    ("conv4k3p3", (1, 28, 28), "padding must be"),
    ("conv4k30", (1, 28, 28), "kernel larger"),
    ("fc10,conv4k3", (1, 28, 28), "needs an image input"),
    ("conv4k3", (784,), "needs an image input"),
    ("pool2,pool2", (1, 28, 28), "two pooling layers"),
    ("pool40", (1, 28, 28), "window larger"),
    ("relu", (1, 28, 28), "expected convCkK"),
])
def test_bad_specs_are_one_line_errors(spec, shape, match):
    with pytest.raises(BstdgError, match=match) as err:
        Architecture.parse(spec, shape, 10)
    assert "\n" not in str(err.value)


def test_from_dict_rejects_unknown_layers():
    with pytest.raises(BstdgError, match="unknown layer type"):
        Architecture.from_dict({"layers": [{"type": "lstm"}], "input_shape": [4], "n_classes": 2})
    with pytest.raises(BstdgError, match="malformed"):
        Architecture.from_dict({"layers": [{"type": "fc"}], "input_shape": [4], "n_classes": 2})


def test_input_order_is_channel_last():
    arch = Architecture.parse("conv2k1", (2, 2, 3), 2)
    perm = input_order(arch)
    # encoder unit (c, y, x) -> engine unit (y, x, c)
    for c in range(2):
        for y in range(2):
            for x in range(3):
                assert perm[(c * 2 + y) * 3 + x] == (y * 3 + x) * 2 + c
    np.testing.assert_array_equal(input_order(Architecture.parse("fc5", (2, 2, 3), 2)), np.arange(12))

"""bstdg: binarized single-spike SNNs trained with spike-timing-dependent gradients.

Time is measured in integer *time steps* everywhere in the package; a spike time is an
``int32`` in ``0..t_max-1`` and the value ``t_max`` itself means "no spike" (see
:mod:`bstdg.encoding`).
"""

__version__ = "0.1.0"

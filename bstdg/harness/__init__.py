"""The harness: commands that run many trainings (``bstdg sweep`` on Ray Tune).

This layer sits on top of the toolkit: it may import any module of ``bstdg``, and nothing
but :mod:`bstdg.cli` imports it. Its optional dependencies (Ray Tune, Optuna) are imported
only when a harness command runs, so ``import bstdg`` and ``import bstdg.cli`` never load
them.
"""

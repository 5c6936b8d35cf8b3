"""``tonic:NAME``: a dataset of the ``tonic`` package already on disk (placeholder: the
binning of tonic's events to the engine's events is not written yet)."""

from __future__ import annotations

from dataclasses import dataclass

from bstdg.data.base import Dataset
from bstdg.errors import DataError


@dataclass(frozen=True)
class TonicOptions:
    """Options of ``tonic:NAME`` datasets."""


class TonicDataset(Dataset):
    Options = TonicOptions

    def __init__(self, name: str, options=None):
        super().__init__(options)
        self.name = f"tonic:{name}"
        raise DataError(f"{self.name}: tonic datasets are not supported yet")

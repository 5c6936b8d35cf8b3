"""``bstdg data list | fetch | verify | build``: the built-in datasets' files."""

from __future__ import annotations

from pathlib import Path

from ..errors import BstdgError, DataError
from .args import existing_data_dir, writable_dir


# --- data --------------------------------------------------------------------------------


def data_list_command(data_dir=None) -> list:
    """Print each built-in dataset: whether it is present and where it was looked for."""
    # heavy: the data registry (tqdm) loads when the command runs
    from ..data import data_list

    rows = data_list(existing_data_dir(data_dir))
    width = max(len(row.name) for row in rows) + 2
    print(f"{'name':<{width}}present  where")
    for row in rows:
        where = str(row.found) if row.present else "looked in " + ", ".join(map(str, row.searched))
        print(f"{row.name:<{width}}{'yes' if row.present else 'no':<7}  {where}")
        print(f"{'':<{width}}size: {row.size}; files: {', '.join(row.files)}")
        for problem in row.problems:
            print(f"{'':<{width}}incomplete: {problem}")
    return rows


def builtin_dataset(name: str):
    # heavy: the data registry (tqdm) loads when the command runs
    from ..data import BUILTIN, get_dataset

    if name not in BUILTIN:
        raise BstdgError(f"unknown dataset {name!r}; built-in: {', '.join(BUILTIN)}")
    return get_dataset(name)


def data_verify_command(name: str, data_dir=None) -> dict:
    """Check dataset ``name`` where it is found (checksums for MNIST/Fashion-MNIST, structure
    and counts for the others); BstdgError if any check fails."""
    # heavy: the data registry (tqdm) loads when the command runs
    from ..data.mnist import IdxDataset

    ds = builtin_dataset(name)
    folder = ds.locate(existing_data_dir(data_dir))
    checks = ds.checks(folder)
    for file, ok in checks.items():
        print(f"{'ok' if ok else 'BAD':<4}{file}")
    bad = [file for file, ok in checks.items() if not ok]
    if not isinstance(ds, IdxDataset):
        if bad:
            raise BstdgError(f"{name} in {folder}: {len(bad)} of {len(checks)} checks fail "
                             f"({'; '.join(bad)})")
        print(f"{name}: all {len(checks)} checks passed in {folder} (structure and counts; "
              f"no published checksums)")
        return checks
    if bad:
        raise BstdgError(f"{name} in {folder}: {len(bad)} of {len(checks)} files fail "
                         f"verification ({', '.join(bad)}); delete them and run "
                         f"`bstdg data fetch {name}`")
    print(f"{name}: all {len(checks)} files verified in {folder}")
    return checks


def data_fetch_command(name: str, data_dir=None, dest="datasets") -> Path:
    """Make verified files of ``name`` available: nothing to do when a verified copy is
    already found in the search order, else download into ``dest/<name>``."""
    ds = builtin_dataset(name)
    data_dir = existing_data_dir(data_dir)
    try:
        folder = ds.locate(data_dir)
    except DataError:
        folder = None
    if folder is not None:
        if all(ds.checks(folder).values()):
            print(f"{name}: already present and verified in {folder}; nothing to do")
            return folder
        print(f"{name}: {folder} holds files that fail verification; fetching into "
              f"{Path(dest) / name}")
    writable_dir(dest, "--dest")
    fetched = ds.fetch(Path(dest))
    print(f"{name}: fetched and verified into {fetched}")
    try:
        used = ds.locate(data_dir)
    except DataError:
        used = None
    if used is None or used.resolve() != fetched.resolve():
        print(f"note: bstdg will read {name} from {used or 'elsewhere'}, not {fetched}: the "
              f"search order is --data-dir, $BSTDG_DATA, ./datasets (pass --data-dir {dest})")
    return fetched


def data_build_command(name: str, source=None, dest="datasets", channels: int = 70, jobs=None,
                       seed: int = 0, limit=None, data_dir=None) -> dict:
    """Build a derived dataset; only ``fsdd-spikes`` (FSDD recordings -> lauscher spikes)."""
    # heavy: the data registry (tqdm) loads when the command runs
    from ..data.fsdd import build_fsdd_spikes

    if name != "fsdd-spikes":
        raise BstdgError(f"`bstdg data build` makes only fsdd-spikes, not {name!r}")
    writable_dir(dest, "--dest")
    written = build_fsdd_spikes(source, dest, channels, jobs, seed, limit,
                                existing_data_dir(data_dir))
    if channels != 70:
        print(f"train on it with a --config file holding: dataset = \"fsdd-spikes\", "
              f"input_channels = {channels}, channels = {channels}")
    return written

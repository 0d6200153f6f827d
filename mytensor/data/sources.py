"""Where datasets live on disk, and how they get there.

Every dataset is looked up in the same places, in this order:

1. the folder given on the command line (`--data-dir`, the `data_dir` argument),
2. the folder named by the environment variable `MYTENSOR_DATA`,
3. the cache folder `~/.cache/mytensor` (or `$MYTENSOR_CACHE`),
4. for MNIST only, the copy shipped inside the package (so the default job works offline).

Inside each of these a dataset sits in its own sub-folder (`mnist/`, `fashion-mnist/`,
`cifar-10-batches-py/`, `tiny-imagenet-200/`...). When it is nowhere, we download it
with urllib into the first of those folders, check its md5, and only then give it
its final name, so an interrupted download never looks like a finished one.
Offline, the error says exactly which files to put where.
"""
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

PACKAGE_FILES = Path(__file__).resolve().parent.parent / "datasets_files"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is in none of the searched folders and could not be downloaded."""


def cache_dir():
    """The per-user cache: downloads land here when no folder was given, and
    decoded image folders are cached under `decoded/` inside it."""
    return Path(os.environ.get("MYTENSOR_CACHE") or Path.home() / ".cache" / "mytensor").expanduser()


def search_dirs(data_dir=None):
    """The base folders to look in, in order (see the module docstring)."""
    dirs = [data_dir, os.environ.get("MYTENSOR_DATA"), cache_dir()]
    out = []
    for d in dirs:
        if d and Path(d).expanduser() not in out:
            out.append(Path(d).expanduser())
    return out


def download_dir(data_dir=None):
    """Where a download goes: the first search folder (--data-dir, else
    $MYTENSOR_DATA, else the cache)."""
    return search_dirs(data_dir)[0]


def find(relative_paths, data_dir=None):
    """The first existing `base/rel` over the search folders, or None.
    `relative_paths` are tried in order within each base folder."""
    for base in search_dirs(data_dir):
        for rel in relative_paths:
            if (base / rel).exists():
                return base / rel
    return None


def download(url, dest, md5=None, timeout=30):
    """Fetch `url` into the file `dest`, atomically: the bytes go to a temporary
    file in the same folder, the md5 is checked, then `os.replace` renames it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            print(f"Downloading {url} -> {dest}", flush=True)
            for block in iter(lambda: response.read(1 << 20), b""):
                h.update(block)
                out.write(block)
        if md5 is not None and h.hexdigest() != md5:
            raise RuntimeError(f"download of {url} is corrupt: md5 {h.hexdigest()}, expected {md5}")
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest


def download_all(files, folder, what, data_dir=None, subfolder="", hint=""):
    """Download `files` [(url, filename, md5)] into `folder`; if that fails, raise
    a DatasetNotFoundError telling the user where to put the files by hand
    (in `subfolder` of a data folder; None: in the data folder itself)."""
    try:
        for url, name, md5 in files:
            if not (Path(folder) / name).exists():
                download(url, Path(folder) / name, md5)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        raise_not_found(what, [name for _, name, _ in files], subfolder, data_dir, f"download failed: {e}", hint)


def raise_not_found(what, names, folder_name, data_dir=None, reason="", hint=""):
    """Say exactly which files to put in which folder."""
    places = "\n".join(f"  {base}" for base in search_dirs(data_dir))
    where = f"into the folder {folder_name}/ inside one of" if folder_name else "into one of"
    raise DatasetNotFoundError(
        f"{what} was not found" + (f" ({reason})" if reason else "") + ".\n"
        f"Put {', '.join(names)} {where}:\n{places}\n"
        f"(choose the folder with --data-dir DIR or MYTENSOR_DATA=DIR).{hint}") from None

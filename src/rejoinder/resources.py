"""Where Rejoinder's files are: files shipped inside the package, and the public data sets beside it.

- :func:`package_path` finds a file or folder shipped inside the installed ``rejoinder`` package
  (scripts, frames, templates, word lists) through :mod:`importlib.resources`, so it works the same
  from a source checkout and from an installed wheel.
- :func:`shared_data` finds the public data sets (BANKING77, SNIPS, the 1966 DOCTOR script, the
  dialogue corpora, the RLHF trees), which are never copied into the package: ``$REJOINDER_SHARED_DATA``
  when it is set, otherwise the first ``shared/data`` folder found in the working directory or one
  of its parents (a checkout with ``../shared`` beside it). Nothing is found by counting folders
  up from a source file, which breaks once Rejoinder is installed.
"""

from __future__ import annotations

import os
from importlib.resources import as_file, files
from pathlib import Path

from rejoinder.errors import ConfigError

ENV_SHARED_DATA = "REJOINDER_SHARED_DATA"


def package_path(*parts: str) -> Path:
    """A file or folder shipped inside the ``rejoinder`` package, e.g. ``package_path("bots", "eliza", "scripts")``."""
    resource = files("rejoinder").joinpath(*parts)
    with as_file(resource) as path:  # a real path for a regular install; wheels are unpacked on install
        return Path(path)


def shared_data_root() -> Path | None:
    """The folder of the public data sets, or None when there is none here (see the module docstring)."""
    override = os.environ.get(ENV_SHARED_DATA)
    if override:
        return Path(override).expanduser()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def shared_data(*parts: str, required: bool = False) -> Path:
    """A path inside the public data sets' folder.

    With ``required=True`` a missing folder or file is a :class:`ConfigError` that says where it was
    looked for and how to point Rejoinder at it.
    """
    root = shared_data_root()
    path = (root if root is not None else Path("shared") / "data").joinpath(*parts)
    if required and not path.exists():
        where = (
            f"{ENV_SHARED_DATA}={os.environ[ENV_SHARED_DATA]}"
            if os.environ.get(ENV_SHARED_DATA)
            else (f"found {root}" if root is not None else "no shared/data folder in the working directory or above it")
        )
        raise ConfigError(
            f"{'/'.join(parts)} is not in the shared data ({where}); set {ENV_SHARED_DATA} to the folder "
            "that holds it (e.g. ../shared/data beside a checkout)"
        )
    return path

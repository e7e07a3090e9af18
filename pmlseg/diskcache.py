"""A per-user cache of derived images that are the same in every process (the 2 mm brain-mask template).

Why: rebuilding the template from nilearn's 1 mm ICBM152 files costs ~2 s per process, a seventh of a
`pmlseg register` run. Entries are made only from installed files (nothing is downloaded) and are keyed
by a hash of everything that determines them (the caller passes the recipe's source code and the
versions involved), so a changed recipe or library never reads a stale entry. Location:
$PMLSEG_CACHE_DIR, else $XDG_CACHE_HOME/pmlseg, else ~/.cache/pmlseg. An unreadable entry is rebuilt
and an unwritable cache is skipped, never an error; entries are written under a temporary name and
renamed, so concurrent jobs never read half a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable

import SimpleITK as sitk

from pmlseg.atomic import atomic_path

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """$PMLSEG_CACHE_DIR, else $XDG_CACHE_HOME/pmlseg, else ~/.cache/pmlseg."""
    if os.environ.get("PMLSEG_CACHE_DIR"):
        return Path(os.environ["PMLSEG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pmlseg"


def cached_images(name: str, key: str, build: Callable[[], tuple[sitk.Image, ...]]) -> tuple[sitk.Image, ...]:
    """``build()``'s images, read from the cache when an entry for (``name``, ``key``) exists."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    stem = cache_dir() / f"{name}-{digest}"
    count = stem.parent / f"{stem.name}.count"  # not with_suffix: names may hold dots ("1.5mm")
    try:
        n = int(count.read_text())
        return tuple(sitk.ReadImage(str(stem.parent / f"{stem.name}-{i}.mha")) for i in range(n))
    except (OSError, ValueError, RuntimeError):
        pass
    images = build()
    try:
        for i, img in enumerate(images):
            with atomic_path(stem.parent / f"{stem.name}-{i}.mha") as tmp:
                sitk.WriteImage(img, str(tmp), True)
        with atomic_path(count) as tmp:  # written last: its presence means every image is there
            tmp.write_text(str(len(images)))
    except (OSError, RuntimeError) as exc:
        log.debug("cache %s not written (%s)", stem, exc)
    return images

"""Write outputs under a temporary name and rename, so no half-written file is ever left."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside ``final``; rename it onto ``final`` only if the block succeeds.

    The temporary name keeps the final suffix (e.g. ``.nii.gz``) so writers that pick a format
    from the extension still work.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(final.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name.split('.')[0]}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give outputs the usual permissions
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(final: str | os.PathLike, text: str) -> None:
    with atomic_path(final) as tmp:
        Path(tmp).write_text(text)


def write_nifti(final: str | os.PathLike, image) -> None:
    """Atomically write a nibabel image or a SimpleITK image."""
    with atomic_path(final) as tmp:
        if hasattr(image, "to_filename"):
            image.to_filename(str(tmp))
        else:
            import SimpleITK as sitk

            sitk.WriteImage(image, str(tmp), True)

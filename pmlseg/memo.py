"""In-process memo of slow functions of images, keyed by the images' content.

Why: one detection job handles all follow-ups of a patient (pmlseg.workflow.detect_patient); each case
reads the same rebaseline FLAIR again and would register the ICBM152 template to it again, twice (brain
mask, lesion location priors), ~10 s per follow-up on 2 cores.  Keying by content (voxels + geometry)
rather than by object or path keeps callers unchanged and can never hand back a result for a different
image.  Hashing a 10 MB image costs ~10 ms.  Small ``maxsize``: a job needs one or two rebaselines at a time.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict

import numpy as np


def image_key(img) -> tuple:
    """Content key of a SimpleITK image: pixel type, geometry and a digest of the voxels."""
    import SimpleITK as sitk

    arr = np.ascontiguousarray(sitk.GetArrayViewFromImage(img))
    return ("image", img.GetPixelIDValue(), img.GetSize(), img.GetOrigin(), img.GetSpacing(), img.GetDirection(),
            hashlib.blake2b(arr.view(np.uint8).ravel(), digest_size=20).hexdigest())


def image_key_json(img) -> list:
    """``image_key`` as JSON gives it back (lists for tuples): to store beside results another process reuses."""
    import json

    return json.loads(json.dumps(image_key(img)))


def _key(value):
    import SimpleITK as sitk

    if isinstance(value, sitk.Image):
        return image_key(value)
    hash(value)  # TypeError for anything unhashable: then the call is not memoised
    return value


def by_image_content(maxsize: int = 2, ignore: tuple[str, ...] = ()):
    """Decorator: remember the last ``maxsize`` results, keyed by image content and the other (hashable) args.

    Keyword arguments named in ``ignore`` (names for messages) are left out of the key.  Safe across threads
    (a register job's threads share rebaseline and follow-up work); two threads asking at once may both compute.
    """

    def decorate(fn):
        cache: OrderedDict = OrderedDict()
        lock = threading.Lock()

        def store(key, value) -> None:
            with lock:
                cache[key] = value
                cache.move_to_end(key)
                while len(cache) > maxsize:
                    cache.popitem(last=False)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                key = (tuple(_key(a) for a in args), tuple((k, _key(v)) for k, v in sorted(kwargs.items()) if k not in ignore))
            except TypeError:
                return fn(*args, **kwargs)
            with lock:
                if key in cache:
                    cache.move_to_end(key)
                    wrapper.hits += 1
                    return cache[key]
            value = fn(*args, **kwargs)
            store(key, value)
            return value

        def remember(args: tuple, kwargs: dict, value) -> None:
            """Store ``value`` as the result of ``fn(*args, **kwargs)`` (computed elsewhere, e.g. by another job)."""
            store((tuple(_key(a) for a in args), tuple((k, _key(v)) for k, v in sorted(kwargs.items()) if k not in ignore)),
                  value)

        wrapper.hits = 0
        wrapper.cache_clear = cache.clear
        wrapper.remember = remember
        return wrapper

    return decorate

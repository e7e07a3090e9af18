"""pmlseg: MRI surveillance for MS patients on natalizumab (new lesions, PML suspicion)."""

__version__ = "0.1.0"

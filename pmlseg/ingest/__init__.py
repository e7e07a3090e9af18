"""Raw PACS export -> de-identified BIDS NIfTI.

index (find DICOM by content, read headers only) -> classify (header rules per series) ->
geometry (refuse series that would give a wrong volume) -> convert (dcm2niix per series) ->
bids (pseudonym labels, names, series.tsv / identity.tsv) with deidentify scrubbing every output.
"""

"""Mapping a region on a Ray cluster, one subpackage per stage of the flow.

``imagery`` (STAC items -> pixels on a window) -> ``tiles`` (region -> grid
tiles) -> ``predict`` (tile ids -> class map and confidence in one Zarr store)
-> ``maps`` (store -> COGs, STAC collection, quicklook). ``training`` (reference
labels + the same catalog and reader -> chips -> a checkpoint) feeds ``predict``;
``accuracy`` (a probability sample of a run's map + reference labels -> its
accuracy and class areas with confidence intervals) judges what ``maps`` publish;
``storage`` serves every stage (local paths and s3:// alike). ``sample`` makes
the seeded test region and is never used by a production run.
"""

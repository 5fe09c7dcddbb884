"""Training data from what mapping teams have: a STAC catalog and reference labels.

Takes reference labels (vector or raster, any CRS) and the run's catalog
selection and grid; gives training chips where the labels are, read by the
same reader as a run's tiles, split by spatial blocks, in one Zarr chip store.
"""

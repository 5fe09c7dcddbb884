"""Local paths and s3:// alike, for every stage.

URIs, small objects and Zarr stores on object storage, GDAL's environment for
reading from it (set once per process), and publishing finished files so that
they are never half-visible; credentials only ever from the environment.
"""

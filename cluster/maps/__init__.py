"""The published map: a run's Zarr store in, cloud-optimized GeoTIFFs out.

Compiles the class map and confidence into COGs with overviews, colour table
and class names (split into parts with a VRT mosaic when large), a STAC
collection describing them and a quicklook PNG.
"""

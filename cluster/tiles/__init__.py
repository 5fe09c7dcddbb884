"""Where the work is: a region and a grid in, tiles out.

Takes a (multi)polygon from GeoJSON in any CRS and a grid (CRS, origin,
resolution, tile size, halo); gives the tiles that meet the region, lazily,
row by row, with each tile's bounds and in-region mask.
"""

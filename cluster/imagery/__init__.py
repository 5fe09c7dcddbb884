"""What a tile sees: STAC items in, pixels on the grid out.

Takes a catalog (static, ItemCollection/ndjson, or STAC API) and a run's
filters; gives each item's bands, units and quality mask as frozen records,
and reads any window of them warped, masked and mosaicked onto the grid.
"""

"""The prediction run: tile ids in, a Zarr store of class map and confidence out.

The driver checks the inputs, streams tile ids to U-Net actors (one per GPU),
and records which tiles are done; each actor reads its tiles and writes its
own chunks, so an interrupted run resumes byte-identical.
"""

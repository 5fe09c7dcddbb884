"""Seeded test data: the sample region, its imagery and catalogs, and a country.

Gives a labelled region whose classes need spatial structure, its scenes as
providers publish them (Sentinel-2 L2A, orthophotos) with static STAC
catalogs, and country-sized footprint catalogs for scale tests. Used by the
demo, tests and benchmarks; never by a production run.
"""

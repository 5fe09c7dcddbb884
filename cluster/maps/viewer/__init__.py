"""A browser viewer of a run's COGs, written with its maps and served by ``statemap view``.

``site`` writes the page (built from ``web/`` with esbuild into ``static/``)
and its ``maps.json``; ``serve`` serves a maps folder on loopback with the
HTTP range requests the page reads COGs with.
"""

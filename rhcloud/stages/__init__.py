"""The stages of a run, one module each, in flow order::

    catalog → ingest → climatology → regrid → ensemble → evaluate → drivers → report

plus ``outputs`` (the tables, results.zarr and provenance a run writes). A stage imports only
``rhcloud.core``, ``rhcloud.storage``, ``rhcloud.products``, ``rhcloud.drivers`` and the stages
before it; ``rhcloud.pipeline`` calls them in order.
"""

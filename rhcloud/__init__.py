"""rhcloud: evaluate soil heterotrophic respiration of CMIP6 models on cloud Zarr with Dask."""

import os

# gcsfs >= 2026.3 probes every open for zonal/HNS buckets over gRPC, which retries for about a
# minute against anything but Google's endpoint (emulators, proxies). The Pangeo bucket is a
# plain bucket, so the probe buys nothing; set before gcsfs is imported, inherited by workers.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

__version__ = "0.1.0"

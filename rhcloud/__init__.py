"""rhcloud: evaluate soil heterotrophic respiration of CMIP6 models on cloud Zarr with Dask.

The public API::

    import rhcloud
    config = rhcloud.load_config("my.yaml")      # or rhcloud.Config(models=[...], ...)
    result = rhcloud.run(config, client=client)  # the eight stages (rhcloud.pipeline)
    result.tables["model_metrics"]               # Table 1; result.results: results.zarr

The stages themselves are in :mod:`rhcloud.stages`, pure computations in :mod:`rhcloud.core`.
"""

import os

# gcsfs >= 2026.3 probes every open for zonal/HNS buckets over gRPC, which retries for about a
# minute against anything but Google's endpoint (emulators, proxies). The Pangeo bucket is a
# plain bucket, so the probe buys nothing; set before gcsfs is imported, inherited by workers.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from rhcloud._version import __version__  # noqa: E402
from rhcloud.config import Config, ConfigError, config_from_dict, load_config  # noqa: E402
from rhcloud.errors import DatasetError, Exclusion, RhcloudError  # noqa: E402
from rhcloud.pipeline import run  # noqa: E402
from rhcloud.stages.outputs import RunResult  # noqa: E402

__all__ = ["Config", "ConfigError", "DatasetError", "Exclusion", "RhcloudError", "RunResult",
           "__version__", "config_from_dict", "load_config", "run"]

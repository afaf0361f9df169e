"""The virtual CMIP6 world: a synthetic archive in the Pangeo layout with planted truth."""

from rhcloud.world.generate import WorldParams, generate_world

__all__ = ["WorldParams", "generate_world"]

"""Drivers stage: spatial GLS model selection (nlme structures) and a GAMM (mgcv::gamm-style).

Entry point: :func:`rhcloud.drivers.api.fit_drivers`; see docs/drivers.md.
"""

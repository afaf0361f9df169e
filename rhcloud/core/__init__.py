"""Pure computations on numpy/xarray objects, no I/O and no configuration: grids and cell
areas, conservative overlap weights and remapping, the time axis, units, lat/lon
conventions, stacking, and the statistics of the evaluation."""

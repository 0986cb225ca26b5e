//! Entry points for the fuzz targets under `fuzz/`: each target is one call to a function here.

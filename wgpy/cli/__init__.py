"""Console entry points: `wgpy` and `wgpy-quick`."""

"""The project's real benchmark zoo (issue: benchmarks): offline datasets, candidate networks, ground truth."""

"""The runtime: Context, running routes, clocks and the producer template."""

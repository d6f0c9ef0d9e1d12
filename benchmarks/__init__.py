"""Benchmarks of keras-faceset against its peers (not tests): `python -m benchmarks.run`."""

"""The benchmark harness: the detector contract, handles, scoring, and the `dab` command line."""

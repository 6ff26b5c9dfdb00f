"""The agent's toolkit: crop (with region proposal), enhance, normalcy priors and measure.

A leaf package: nothing here imports the rest of the project, so the tools run the same under the station,
in training rollouts and in benchmarks.
"""

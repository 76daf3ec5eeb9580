"""Pipeline: plan jobs per site (pure), order them as a graph, and run a benchmark end to end."""

from fedsim.pipeline.plan import Cubes, SitePlan, plan

__all__ = ["Cubes", "SitePlan", "plan"]

"""The static HTML report: run overview, funnel, trajectory and arena viewers."""

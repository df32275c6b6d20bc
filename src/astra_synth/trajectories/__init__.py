"""Pipeline A: tool graph → walks → verified chains → tasks → rollouts → judged SFT trajectories."""

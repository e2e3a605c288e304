"""Job queue, workers and job processes: states, claim, heartbeats, cancel / pause / resume."""

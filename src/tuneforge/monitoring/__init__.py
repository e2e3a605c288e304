"""Monitoring: anomaly detectors over a run's metrics, platform checks, the alert webhook, Prometheus collectors."""

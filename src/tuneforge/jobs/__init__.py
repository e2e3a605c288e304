"""Job queue, workers and job processes: claims, heartbeats, cancel / pause / resume, for job kinds that
``services`` registers (``jobs.kinds``); nothing here knows what a kind does."""

"""Hyperparameter search: Optuna studies over training configs, stored in the platform's database.

``space`` reads and checks a search file; ``objective`` trains and scores one trial; ``callbacks`` reports the
eval loss to the trial and prunes; ``study`` keeps studies in Optuna's RDB storage with heartbeats;
``local`` runs trials in processes on this machine; ``outputs`` writes best.yaml, trials.csv, summary.md
and the plots.
"""

"""The Optuna database: the writer the workers use (WAL, locks, heartbeats) and the read-only reader the reports use."""

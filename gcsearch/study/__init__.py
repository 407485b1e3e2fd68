"""A study: its file (parsed without torch), the Optuna study's life (create, resume, queue a grid), pruning."""

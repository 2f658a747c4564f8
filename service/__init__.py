"""The control plane: settings, the database layer, Optuna's adapter, the study spec, the data
functions behind the API, scheduling, and the FastAPI app.

Sub-packages, lowest first (each imports only those above it, plus settings/errors/artifacts):
``db`` → ``optuna`` → ``spec`` → ``scheduling`` → ``studies`` → ``api``. The service never imports
worker/ or objectives' training code; it reads only objectives' torch-free modules.
"""

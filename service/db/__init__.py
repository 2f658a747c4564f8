"""The database layer: the Database handle (engine, sessions, Optuna's storage), the hpo_* tables,
the retry policy for transient errors, and migrations. Imports settings and service.optuna's storage only."""

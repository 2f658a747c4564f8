"""One data function per API operation (keyword-only, no HTTP): create, change status, delete,
the one read path of a study, its trials, its best trial and model, and the per-process tallies.
Imports service.db, service.optuna, service.spec, service.scheduling; never the API."""

"""Optuna's adapter, the only package that uses Optuna's private API (a test enforces it):
the tuned and resilient storage, the worker's trial cache, the claim's Optuna half, SQL reads of Optuna's tables.
Imports nothing of the service but service.db.retry."""

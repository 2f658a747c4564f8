"""Pages people read: a study's HTML report and several studies compared, self-contained (plotly's
JavaScript inlined, no request leaves the browser). Imports service.db, service.optuna,
service.spec and service.studies; never the API."""

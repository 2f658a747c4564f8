"""PostgreSQL fixtures (filled in by the service tests)."""

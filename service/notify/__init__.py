"""Notifications: what a study tells the outside world (completed, paused, a new best, a failed
trial), written to an outbox in the transaction of the change it reports and delivered by the
API's dispatcher, signed, retried, and never to an address the allow-list does not admit.
Imports service.db and service.spec; never the API."""

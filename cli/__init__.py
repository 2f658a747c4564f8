"""The ``hpo`` command: the composition root that wires service, worker and objectives."""

"""The study spec: its schema, search-space entries, the sampler and pruner it names, and the
checks of what it references outside itself. Imports service.db and objectives' torch-free modules."""

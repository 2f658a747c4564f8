"""Who may start a trial when: the budget, the study lock, the failure guard and the sweeper.
Imports service.db, service.optuna and service.spec."""

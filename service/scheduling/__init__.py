"""Who may start a trial when: the budget, the study lock, the failure guard and the stale-trial
sweep. Imports service.db and service.optuna; never service.studies or the API."""

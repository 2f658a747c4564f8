"""The data plane: ``worker --gpus 0,1`` runs trials of the studies in the database.

A supervisor (worker.supervisor) starts one child process per GPU slot; each child
(worker.loop) picks a study, creates one Optuna trial under the study's lock
(service.scheduling.budget), and runs it through worker.objective, which adapts Optuna's trial to
objectives.train.
"""

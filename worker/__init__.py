"""The data plane: ``worker --gpus 0,1`` runs trials of the studies in the database.

A supervisor (worker.supervisor) starts one child process per GPU slot; each child's loop
(worker.slot_loop) picks a study, claims a trial under the study's lock (worker.claims, with
service.scheduling.lock and service.scheduling.budget), and runs it (worker.runner) through
worker.objective, which adapts Optuna's trial to objectives.train.
"""

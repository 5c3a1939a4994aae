"""Execution: a run's plan carried out over SSH, per server in parallel, step rows written as they happen.

runner (a run end to end) -> node (one server's steps) and cluster_ops (check, drill, maintenance)
-> session (a connection with the run's secrets) and recorder (step rows) -> wizard.ssh and wizard.carp.
"""

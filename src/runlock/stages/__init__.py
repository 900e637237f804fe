"""The composition root: ``@stage``, a run's lifecycle, sweeps, the task-map entry, interactive
mode and the pycrumbs/footsteps drop-ins. The only package that ties the others together."""

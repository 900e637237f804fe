"""The record of a run: its directory, its ``run.lock`` (load, dump, migrate, typed view), run ids,
and the one walker of a results root. Pure data: nothing here knows git, MLflow or OmegaConf."""

"""Finding and reading runs: the SQLite index, ``runlock.runs()``, filters, run references and
text rendering. Reads lock files only, never the live environment."""

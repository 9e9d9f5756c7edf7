"""The zoo's results, re-measured: each model's claim (claims.py), the runs that measure it on N seeds
(reproduce.py, resumable, keyed by a hash of the code each run depends on: sources.py), and the files that
report it, docs/results/<model>.md and .json and the README's zoo table (report.py)."""

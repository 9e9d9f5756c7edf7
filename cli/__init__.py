"""attnkit.cli: the `attnkit` command (Typer). Each command is a thin module over a library function."""

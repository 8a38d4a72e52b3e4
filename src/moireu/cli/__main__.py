"""``python -m moireu.cli``."""

from moireu.cli import main

main()

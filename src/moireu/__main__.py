"""``python -m moireu``."""

from moireu.cli import main

main()

"""``python -m morbench ...`` runs the ``morbench`` command line."""

from morbench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

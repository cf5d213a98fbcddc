"""packager's own targets, one module each, registered in pyproject.toml's
``packager.targets`` entry-point group."""

"""Code that runs inside bundles. Nothing here imports packager."""

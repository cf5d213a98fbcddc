"""Wrappers of outside programs (pip for another platform, other Python interpreters, the
Lambda runtime interface client). Each says plainly when its program is missing."""

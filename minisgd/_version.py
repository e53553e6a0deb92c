"""The package version, in one place: setup.cfg reads it, the sweep runner stamps it into run folders."""
__version__ = "0.1.0"

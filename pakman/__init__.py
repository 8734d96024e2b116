"""PAKman: signed Alpine packages from an application repository, shipped to S3."""

__version__ = "9.0.0"

"""sr3: image super-resolution by iterative refinement (SR3) and cascaded diffusion models (CDM)."""

__version__ = "0.1.0"

"""Text-quality filter rules (C4, Gopher, FineWeb) for the filter stage."""

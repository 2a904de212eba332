"""Small helpers every step shares: atomic file writes, progress bars, optional dependencies."""

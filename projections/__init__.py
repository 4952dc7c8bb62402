"""projections (filled by a later issue)."""

"""upcasters (filled by a later issue)."""

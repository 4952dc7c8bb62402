"""The revisions, one module each, applied in order from 0001."""

"""Small shared helpers: atomic file output, meta-device construction, errors."""

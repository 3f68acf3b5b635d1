"""Collectors: the only built-in plugins that read the live machine."""

"""Built-in remediation plugins of bwdoctor, one module per area.

Each public module here is registered as its own plugin ("remedies.<module>") through the same
API a third-party plugin uses, and imports only the public ``bwdoctor`` API. Modules whose
name starts with ``_`` are shared helpers, not plugins.
"""

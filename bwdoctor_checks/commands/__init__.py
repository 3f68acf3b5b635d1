"""Built-in plugins that add commands to the ``bwdoctor`` command line."""

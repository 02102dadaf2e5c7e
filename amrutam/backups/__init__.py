"""pgBackRest backups: configuration, commands, and what the repository can restore."""

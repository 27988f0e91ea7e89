"""The ``mq_*`` commands: each parses options, calls the engine, prints. See ``docs/commands.md``."""

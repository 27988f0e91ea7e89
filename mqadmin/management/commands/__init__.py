"""The demo site's own commands: mq_demo (make demo) and mq_db (its embedded PostgreSQL)."""

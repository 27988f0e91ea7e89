"""mqadmin's management commands (``mq_*``) and what they share (``queues.management.base``)."""

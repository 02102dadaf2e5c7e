"""The Celery queues: one list, read by the app's routing and the queue-depth metric."""

QUEUES = ("default", "notifications", "maintenance")

"""The worker-side request of the reconcile task (Celery's ``Task.Request``).

Imported by name, by the worker alone, when it builds the task's strategy.
"""

from __future__ import annotations

from typing import Any

from celery.worker.request import Request

from scim_bridge.workers import logs


class TracedRequest(Request):
    """Celery's request; it hands the correlation id of its message to the logs before the
    worker's main process writes that the task was received."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request_id = self.request_dict.get(logs.REQUEST_ID_HEADER)
        if isinstance(request_id, str):
            logs.task_received(self.id, request_id)

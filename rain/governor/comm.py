"""The effects the governor core asks for, as one small interface.

``GovernorCore`` changes state and calls these; the asyncio shell (``Governor``) performs
them and reports back through core events on the loop thread; tests record them. Calls
made while the core handles an event must not call back into the core before returning
(``pump_soon``, ``flush_soon`` and ``hold`` schedule, they do not run).
"""


class GovernorComm:
    def fetch(self, obj):
        """Start pulling ``obj`` from one of ``obj.locations``; end with ``core.fetched``
        (after storing it) or ``core.fetch_failed``."""
        raise NotImplementedError

    def start_task(self, task):
        """Run ``task`` (its CPUs and resources are taken); end with ``core.task_done``,
        ``task_failed`` or ``task_returned``, and always ``core.task_ended``."""
        raise NotImplementedError

    def queue_behind(self, task):
        """Send ``task`` to an executor busy with tasks like it, behind its calls; False
        if none takes it (nothing was done)."""
        raise NotImplementedError

    def stop_running(self, tasks):
        """Stop these running tasks (the server stopped them); each still ends with
        ``core.task_ended``."""
        raise NotImplementedError

    def objects_deleted(self, keys):
        """Objects moved to the delete list: drop executor caches, arm the expiry timer."""
        raise NotImplementedError

    def pump_soon(self):
        """Call ``core.pump`` in a later turn of the loop."""
        raise NotImplementedError

    def flush_soon(self):
        """Call ``core.flush`` at the end of this loop turn."""
        raise NotImplementedError

    def hold(self, delay):
        """Call ``core.hold_expired`` after ``delay`` seconds unless ``cancel_hold``."""
        raise NotImplementedError

    def cancel_hold(self):
        raise NotImplementedError

    def calls_behind(self):
        """Calls waiting in executors behind the one each is running."""
        raise NotImplementedError

    def connected(self):
        """Whether updates can be sent to the server now."""
        raise NotImplementedError

    def send_update(self, objects, tasks):
        """Send one update message: object rows and task rows (``update_columns``)."""
        raise NotImplementedError

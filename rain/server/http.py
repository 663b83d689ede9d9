"""The server's HTTP side (tornado on the server's loop): the event log query API.

Other pages (dashboard, REST) register their handlers through ``make_app(extra=...)``.
"""
import json
import logging

import tornado.web

from .events import EventFilterError

logger = logging.getLogger(__name__)


class JsonHandler(tornado.web.RequestHandler):
    """Base: JSON errors with a clear message and a 4xx status, never an HTML 500 page."""

    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "application/json")
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], tornado.web.HTTPError) \
                and exc_info[1].log_message:
            message = exc_info[1].log_message
        self.finish(json.dumps({"error": message}))

    def read_json(self):
        if not self.request.body:
            return None
        try:
            return json.loads(self.request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise tornado.web.HTTPError(400, f"invalid JSON: {exc}") from None

    def send_json(self, value):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value, default=str))


class EventsHandler(JsonHandler):
    def initialize(self, events):
        self.events = events

    async def post(self):
        try:
            result = await self.events.query(self.read_json())
        except EventFilterError as exc:
            raise tornado.web.HTTPError(400, str(exc)) from None
        self.send_json(result)


class NotFoundHandler(JsonHandler):
    def prepare(self):
        raise tornado.web.HTTPError(404, f"no such resource: {self.request.path}")


def make_app(events, extra=()):
    handlers = [(r"/events/?", EventsHandler, {"events": events})]
    handlers.extend(extra)
    return tornado.web.Application(handlers, default_handler_class=NotFoundHandler)

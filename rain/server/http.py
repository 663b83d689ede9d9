"""The server's HTTP side (tornado on the server's loop): the event log query API.

Other pages (dashboard, REST) register their handlers through ``make_app(extra=...)``.
"""
import json
import logging
import re
from urllib.parse import urlencode

import tornado.web

from ..auth import HTTP_COOKIE_PREFIX, http_token, token_matches
from .events import EventFilterError

logger = logging.getLogger(__name__)


# Replies that carry user data (JSON, stored objects of any content type) run no script
# and load nothing on this origin, where the token cookie lives; pages of the dashboard
# may run their own scripts and talk to their own server only.
DATA_POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"
PAGE_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
               "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
               "font-src 'self' data:; connect-src 'self'; object-src 'none'; "
               "base-uri 'none'; form-action 'self'")


class JsonHandler(tornado.web.RequestHandler):
    """Base: JSON errors with a clear message and a 4xx status, never an HTML 500 page;
    no content sniffing and a content security policy on every reply."""

    content_security_policy = DATA_POLICY

    def set_default_headers(self):
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", self.content_security_policy)

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
        return parse_json(self.request.body)

    def send_json(self, value):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value, default=str))


# JSON nested deeper than this, or with integers longer than this, is refused with a 400:
# nothing Rain accepts comes near, and Python's parser would fail on them with a
# RecursionError or spend its time on a number.
JSON_MAX_DEPTH = 64
JSON_MAX_DIGITS = 40


def parse_json(body):
    """The value of a request's JSON body, or HTTPError 400 saying what is wrong."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as exc:
        raise tornado.web.HTTPError(400, f"invalid JSON: not UTF-8 ({exc})") from None
    depth = _nesting_depth(text)
    if depth > JSON_MAX_DEPTH:
        raise tornado.web.HTTPError(
            400, f"invalid JSON: nested deeper than {JSON_MAX_DEPTH} levels") from None
    try:
        value = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise tornado.web.HTTPError(400, f"invalid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text):
        # Half a surrogate pair is no character: it could be neither stored nor sent on.
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise tornado.web.HTTPError(400, "invalid JSON: a \\u escape is half of a "
                                             "surrogate pair, not a character") from None
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")


def _nesting_depth(text):
    """The deepest nesting of arrays and objects outside strings (regular expressions do
    the scanning, Python only counts the brackets)."""
    brackets = _NOT_A_BRACKET.sub("", _STRING.sub("", text))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def _bounded_int(digits):
    if len(digits.lstrip("-")) > JSON_MAX_DIGITS:
        raise ValueError(f"a number with {len(digits)} digits (at most {JSON_MAX_DIGITS})")
    return int(digits)


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


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


@tornado.web.stream_request_body
class ForbiddenHandler(JsonHandler):
    """Every request without the cluster's token ends here, answered as soon as its
    headers are read: a stranger's body is never read into memory (the connection is
    closed after the answer instead)."""

    def data_received(self, chunk):
        pass

    def prepare(self):
        raise tornado.web.HTTPError(
            403, "this Rain server needs its cluster token: open the dashboard link that "
                 "`rain start` or the notebook showed (it carries ?token=...), or send the "
                 "header "
                 "'Authorization: token <token>' (`rain token HOST:PORT` prints it for a "
                 "server of yours)")


class TokenCookieHandler(tornado.web.RequestHandler):
    """A browser that opened a link with ``?token=``: keep the token in a cookie for this
    server's port and show the same page without it in the address bar."""

    def get(self):
        settings = self.application.settings
        self.set_cookie(settings["rain_cookie"], settings["rain_token"], httponly=True,
                        samesite="Lax", secure=bool(settings.get("rain_secure")))
        query = urlencode([(key, value.decode("utf-8", "replace"))
                           for key, values in self.request.query_arguments.items()
                           if key != "token" for value in values])
        path = "/" + self.request.path.lstrip("/")     # never "//host": another site
        self.redirect(path + (f"?{query}" if query else ""))

    head = get


class TokenGuardedApplication(tornado.web.Application):
    """Routes a request to its handler only when it presents the token (when there is one)."""

    def find_handler(self, request, **kwargs):
        token = self.settings.get("rain_token")
        if token:
            presented = http_token(request, self.settings.get("rain_cookie", ""))
            if not token_matches(token, presented):
                return self.get_handler_delegate(request, ForbiddenHandler)
            if request.method in ("GET", "HEAD") and "token" in request.query_arguments \
                    and "Authorization" not in request.headers:
                return self.get_handler_delegate(request, TokenCookieHandler)
        return super().find_handler(request, **kwargs)


def make_app(events, extra=(), token=""):
    """The server's HTTP application; with a ``token``, every request must present it."""
    handlers = [(r"/events/?", EventsHandler, {"events": events})]
    handlers.extend(extra)
    return TokenGuardedApplication(handlers, default_handler_class=NotFoundHandler,
                                   rain_token=token)


#: A request's headers must come whole within this many seconds and fit in this many
#: bytes (a connection idle between requests is closed after as long): strangers sending
#: headers a byte at a time cannot hold connections and their buffers for long.
HEADER_TIMEOUT = 30.0
MAX_HEADER_SIZE = 32 * 1024


def listen_http(app, port, host, tls=None):
    """Listen (HTTPS with ``tls``, a ``rain.tls.Tls``); returns (the HTTP server, its bound
    (host, port)). The token cookie is named after the bound port: browsers share cookies
    between the ports of one host."""
    server = app.listen(port, address=host,
                        ssl_options=tls.server_context() if tls is not None else None,
                        idle_connection_timeout=HEADER_TIMEOUT,
                        max_header_size=MAX_HEADER_SIZE)
    app.settings["rain_secure"] = tls is not None
    bound = next(iter(server._sockets.values())).getsockname()[:2]
    app.settings["rain_cookie"] = f"{HTTP_COOKIE_PREFIX}{bound[1]}"
    return server, bound

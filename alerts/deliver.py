"""Send rendered alerts: webhook POST, SMTP, Apprise. The only network code in alerts/.

Every public function returns a DeliveryOutcome and never raises: a failed delivery is data
that the flow records and retries in a later run. Error texts never contain channel secrets.
"""
from __future__ import annotations

import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Callable, Iterable
from urllib.parse import urlsplit

import anyio
import anyio.from_thread
import httpx
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_exponential_jitter

from alerts.channels import AppriseChannel, EmailChannel, WebhookChannel
from alerts.render import USER_AGENT, apprise_body, apprise_title, webhook_body, webhook_headers
from ingest.models import AlertHit
from ingest.redact import redact
from ingest.retry_after import retry_after_seconds

BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 2.0
MAX_RETRY_AFTER_S = 5.0  # a longer Retry-After is left to the next run rather than holding this one
ERROR_DETAIL_CHARS = 200  # enough of a receiver's error body to explain a 4xx, not enough to flood the log

Sleep = Callable[[float], None]


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one send call achieved: success, attempts made in this call, and the last error."""

    ok: bool
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class _Try:
    """One attempt's result as data, so the retry policy can judge it without exceptions."""

    ok: bool
    error: str | None = None
    transient: bool = False
    retry_after: float | None = None


_backoff = wait_exponential_jitter(multiplier=BACKOFF_BASE_S, max=BACKOFF_CAP_S, jitter=BACKOFF_BASE_S)


def _wait(state: RetryCallState) -> float:
    """The server's Retry-After when it gave one, else exponential backoff with jitter."""
    last: _Try = state.outcome.result()
    return last.retry_after if last.retry_after is not None else _backoff(state)


def _worth_retrying(attempt: _Try) -> bool:
    """Transient failures, unless the server asked us to wait longer than a run should."""
    if attempt.ok or not attempt.transient:
        return False
    return attempt.retry_after is None or attempt.retry_after <= MAX_RETRY_AFTER_S


def _with_retries(once: Callable[[], _Try], retries: int, secrets: Iterable[str | None],
                  sleep: Sleep) -> DeliveryOutcome:
    """Run `once` up to 1 + retries times under the shared policy; redact secrets from the error."""
    retrying = Retrying(stop=stop_after_attempt(max(retries, 0) + 1), wait=_wait, sleep=sleep,
                        retry=retry_if_result(_worth_retrying),
                        retry_error_callback=lambda state: state.outcome.result())
    last = retrying(_guarded(once))
    return DeliveryOutcome(last.ok, retrying.statistics["attempt_number"], _redact(last.error, secrets))


def _guarded(once: Callable[[], _Try]) -> Callable[[], _Try]:
    """Turn any unexpected exception into a final failed attempt, so nothing escapes a send."""
    def run() -> _Try:
        """`once`, with exceptions as data."""
        try:
            return once()
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
            return _Try(False, _describe(exc))
    return run


def _describe(exc: BaseException) -> str:
    """'ExceptionType: message', or just the type when the message is empty."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _redact(text: str | None, secrets: Iterable[str | None]) -> str | None:
    """Replace every secret standing as a whole token in `text` with '***'."""
    return redact(text, secrets)


def _url_secrets(urls: Iterable[str]) -> list[str]:
    """Whole URLs (tokens often sit in their paths) and any password in their user info."""
    urls = list(urls)
    secrets = list(urls)
    for url in urls:
        try:
            secrets.append(urlsplit(url).password or "")
        except ValueError:
            pass  # an unparsable URL is still redacted whole
    return secrets


# --- webhook ---------------------------------------------------------------------------------

class WebhookClient:
    """One run's webhook client: an async httpx client on a private event-loop thread.

    Each POST runs under anyio.fail_after(timeout_s): a hard deadline for the whole exchange
    (connect, request, status line, headers, error body), so a receiver that trickles a byte a
    second cannot hold a run (and its writer lock) past the channel's timeout_s. httpx's own
    timeouts are per network operation and restart with every byte.
    """

    def __init__(self) -> None:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = None
        self._client: httpx.AsyncClient | None = None

    def __enter__(self) -> "WebhookClient":
        self._portal = self._portal_cm.__enter__()
        self._client = self._portal.call(self._open)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._portal.call(self._client.aclose)
        finally:
            self._portal_cm.__exit__(None, None, None)

    @staticmethod
    async def _open() -> httpx.AsyncClient:
        # trust_env stays on so HTTPS_PROXY/NO_PROXY and SSL_CERT_FILE work for outbound hooks.
        return httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False,
                                 limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
                                 headers={"User-Agent": USER_AGENT})

    def post(self, url: str, body: bytes, headers: dict[str, str], deadline_s: float) -> tuple[int, httpx.Headers, str]:
        """(status, headers, start of the body when not 2xx); raises TimeoutError past the deadline."""
        return self._portal.call(self._post, url, body, headers, deadline_s)

    async def _post(self, url: str, body: bytes, headers: dict[str, str],
                    deadline_s: float) -> tuple[int, httpx.Headers, str]:
        with anyio.fail_after(deadline_s):
            # A redirect would turn the POST into a GET and drop the body: report it instead of following.
            async with self._client.stream("POST", url, content=body, headers=headers, timeout=deadline_s,
                                           follow_redirects=False) as response:
                detail = "" if response.is_success else await _peek(response)
                return response.status_code, response.headers, detail


def http_client() -> WebhookClient:
    """The webhook client for one run (use as a context manager)."""
    return WebhookClient()


def send_webhook(client: WebhookClient, channel: WebhookChannel, hit: AlertHit,
                 *, sleep: Sleep = time.sleep) -> DeliveryOutcome:
    """POST one hit to the channel URL (signed when it has a secret); retries transient failures."""
    try:
        body = webhook_body(hit, channel)
        headers = webhook_headers(hit, channel, body)
    except Exception as exc:  # noqa: BLE001 - e.g. an unknown format: report it, don't raise
        return DeliveryOutcome(False, 0, _redact(_describe(exc), _webhook_secrets(channel)))
    once = lambda: _post_once(client, channel, body, headers)  # noqa: E731
    return _with_retries(once, channel.retries, _webhook_secrets(channel), sleep)


def _webhook_secrets(channel: WebhookChannel) -> list[str | None]:
    """The secret, and the URL itself: hook URLs such as Slack's are credentials too."""
    return [channel.secret, *_url_secrets([channel.url])]


def _post_once(client: WebhookClient, channel: WebhookChannel, body: bytes,
               headers: dict[str, str]) -> _Try:
    """One POST under a hard deadline; the status and any Retry-After become data."""
    try:
        status, response_headers, detail = client.post(channel.url, body, headers, channel.timeout_s)
    except httpx.UnsupportedProtocol as exc:
        return _Try(False, _describe(exc))
    except (TimeoutError, httpx.TimeoutException) as exc:
        return _Try(False, f"timeout after {channel.timeout_s:g}s ({type(exc).__name__})", transient=True)
    except httpx.TransportError as exc:
        return _Try(False, _describe(exc), transient=True)
    if 200 <= status < 300:
        return _Try(True)
    return _http_failure(status, response_headers, detail)


def _http_failure(status: int, headers: httpx.Headers, detail: str) -> _Try:
    """A non-2xx answer: 429 and 5xx are transient, anything else is final."""
    transient = status == 429 or status >= 500
    retry_after = retry_after_seconds(headers.get("Retry-After")) if transient else None
    error = f"HTTP {status}"
    if retry_after is not None:
        error += f" (Retry-After {retry_after:g}s)"
    if detail:
        error += f": {detail}"
    return _Try(False, error, transient=transient, retry_after=retry_after)


async def _peek(response: httpx.Response) -> str:
    """The start of an error response body on one line, without reading all of it."""
    try:
        async for chunk in response.aiter_bytes():
            return " ".join(chunk[:ERROR_DETAIL_CHARS].decode("utf-8", "replace").split())
    except httpx.HTTPError:
        pass  # the status alone is still a useful error
    return ""


# --- email -----------------------------------------------------------------------------------

def send_email(channel: EmailChannel, message: EmailMessage, *, sleep: Sleep = time.sleep) -> DeliveryOutcome:
    """Send one message over SMTP (SSL or STARTTLS, login when configured); retries transient failures."""
    once = lambda: _smtp_once(channel, message)  # noqa: E731
    return _with_retries(once, channel.retries, [channel.password], sleep)


def _smtp_once(channel: EmailChannel, message: EmailMessage) -> _Try:
    """One SMTP session; SMTP reply codes decide whether a failure is transient (4xx) or final (5xx)."""
    try:
        with _smtp_session(channel) as smtp:
            refused = smtp.send_message(message, from_addr=channel.sender, to_addrs=list(channel.to))
    except smtplib.SMTPRecipientsRefused as exc:
        return _refused(exc.recipients)
    except smtplib.SMTPResponseException as exc:
        return _Try(False, f"SMTP {exc.smtp_code}: {_reply_text(exc.smtp_error)}",
                    transient=400 <= exc.smtp_code < 500)
    except ssl.SSLError as exc:  # certificate and protocol problems don't fix themselves in a second
        return _Try(False, f"TLS: {_describe(exc)}")
    except smtplib.SMTPServerDisconnected as exc:
        return _Try(False, _describe(exc), transient=True)
    except smtplib.SMTPException as exc:  # e.g. STARTTLS or AUTH not offered by the server
        return _Try(False, _describe(exc))
    except OSError as exc:  # refused, reset, timed out, name resolution
        return _Try(False, _describe(exc), transient=True)
    if refused:  # some recipients got it: retrying would send them a duplicate
        return _Try(True, "some recipients refused: " + _recipients_text(refused))
    return _Try(True)


def _smtp_session(channel: EmailChannel) -> smtplib.SMTP:
    """A connected, secured and logged-in SMTP session (closed again if any step fails)."""
    # An explicit verifying context: smtplib's own default for SMTP_SSL/starttls skips certificate checks.
    if channel.ssl:
        smtp = smtplib.SMTP_SSL(channel.smtp_host, channel.smtp_port, timeout=channel.timeout_s,
                                context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=channel.timeout_s)
    try:
        if channel.starttls and not channel.ssl:
            smtp.starttls(context=ssl.create_default_context())
        if channel.username:
            smtp.login(channel.username, channel.password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


def _refused(recipients: dict) -> _Try:
    """Every recipient refused: transient only if every refusal was a 4xx."""
    transient = all(400 <= code < 500 for code, _ in recipients.values())
    return _Try(False, "all recipients refused: " + _recipients_text(recipients), transient=transient)


def _recipients_text(recipients: dict) -> str:
    """'a@x (550 no such user), b@y (451 try later)'."""
    return ", ".join(f"{addr} ({code} {_reply_text(reply)})" for addr, (code, reply) in recipients.items())


def _reply_text(reply: bytes | str) -> str:
    """An SMTP reply as one line of text."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())


# --- apprise ---------------------------------------------------------------------------------

def send_apprise(channel: AppriseChannel, hit: AlertHit) -> DeliveryOutcome:
    """Notify every Apprise URL of the channel; Apprise retries each failing service by itself."""
    try:
        return _notify(channel, hit)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        return DeliveryOutcome(False, 0, _redact(_describe(exc), _url_secrets(channel.urls)))


def _notify(channel: AppriseChannel, hit: AlertHit) -> DeliveryOutcome:
    """One notify() call; Apprise's per-service retry means a retry never repeats a service that succeeded."""
    import apprise  # here, not at the top: it takes a third of a second to import and most runs send nothing

    notifier = apprise.Apprise(asset=apprise.AppriseAsset(default_service_retry=max(channel.retries, 0)))
    invalid = [str(n) for n, url in enumerate(channel.urls, 1) if not notifier.add(url)]
    if invalid:
        return DeliveryOutcome(False, 0, f"invalid Apprise URL (entry {', '.join(invalid)} of the channel)")
    if not channel.urls:
        return DeliveryOutcome(False, 0, "no Apprise URLs configured")
    with notifier.notify(body=apprise_body(hit), title=apprise_title(hit)) as result:
        attempts = max((len(service) for service in result), default=0)
        failures = [_service_error(service) for service in result if not service]
        error = "; ".join(failures) or (None if result else f"apprise: {result.status.name.lower()}")
        return DeliveryOutcome(bool(result), attempts, _redact(error, _url_secrets(channel.urls)))


def _service_error(service) -> str:
    """'Service name: last warning Apprise logged for it' (URLs left out: they often carry tokens)."""
    problems = [entry.message for entry in service.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
    detail = problems[-1] if problems else service.status.name.lower()
    return f"{service.name}: {' '.join(detail.split())}"

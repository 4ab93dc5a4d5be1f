"""A small REST client for a Spring Cloud Data Flow 2.11 server (streams and apps only).

Every failure becomes one `ScdfError` whose message says what was attempted and what
the server (or the network) answered. Credentials live only in the session's auth
object: they are never put in a URL, a message or a log line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import yaml

DEFAULT_TIMEOUT = 30.0


class ScdfError(RuntimeError):
    """One clear message naming what failed."""


class ScdfHttpError(ScdfError):
    def __init__(self, what: str, status: int, detail: str):
        super().__init__(f"{what} failed: HTTP {status}: {detail}")
        self.what = what
        self.status = status
        self.detail = detail


class ScdfUnreachable(ScdfError):
    pass


class AuthError(ValueError):
    """Bad credential options; the message never contains a credential."""


# ---------------------------------------------------------------- auth


@dataclass(frozen=True)
class Credentials:
    """Basic (username + password) or bearer token; repr hides the secrets."""

    username: str | None = None
    password: str | None = None
    token: str | None = None

    def __repr__(self) -> str:  # never show a secret, even in a traceback
        kind = "bearer" if self.token else "basic" if self.username else "none"
        return f"Credentials(kind={kind!r}, username={self.username!r})"

    __str__ = __repr__

    @property
    def kind(self) -> str:
        return "bearer" if self.token else "basic" if self.username else "none"


def _read_secret(path: str, what: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
    value = text.strip("\r\n")
    if not value:
        raise AuthError(f"the {what} file {path} is empty")
    return value


def resolve_credentials(
    *,
    username: str | None = None,
    password_file: str | None = None,
    token_file: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Credentials:
    """Credentials from flags first, then SCDF_USERNAME / SCDF_PASSWORD / SCDF_TOKEN.

    Passwords and tokens are only read from files or the environment, never from the
    command line (where `ps` shows them).
    """
    env = os.environ if env is None else env
    token = _read_secret(token_file, "token") if token_file else (env.get("SCDF_TOKEN") or None)
    user = username or env.get("SCDF_USERNAME") or None
    password: str | None
    if password_file:
        password = _read_secret(password_file, "password")
    else:
        password = env.get("SCDF_PASSWORD") or None
    if token and (username or password_file):
        raise AuthError("give either a bearer token or a username/password, not both")
    if token:
        return Credentials(token=token)
    if password and not user:
        raise AuthError("a password was given without a username (--username or SCDF_USERNAME)")
    if user and not password:
        raise AuthError(f"no password for user {user!r} (--password-file or SCDF_PASSWORD)")
    return Credentials(username=user, password=password) if user else Credentials()


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str):
        self._token = token

    def __call__(self, r):
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "_Bearer(***)"


def redact_url(url: str) -> str:
    """The URL without any user:password@ part (safe to print)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


# ---------------------------------------------------------------- responses


_INSTALL_ERROR = re.compile(
    r"Could not install AppDeployRequest .*?AppDefinition@\w+\s+name\s*=\s*'(?P<app>[^']+)'.*"
    r"\]\s+to platform\s+\[(?P<platform>[^\]]*)\]\.\s+Error Message\s*=\s*\[(?P<error>.*)\]\s*$",
    re.S,
)


def short_install_error(text: str) -> str:
    """Skipper's "Could not install AppDeployRequest [...]" (the whole request with every
    property, then the platform's error) as the app, the platform and the error; the
    fabric8 client's `Received status: Status(...)` dump is dropped (its message is
    already in the text before it)."""
    m = _INSTALL_ERROR.search(text)
    if not m:
        return text
    error = " ".join(m.group("error").split(" Received status:", 1)[0].split())
    return f"Skipper could not install app {m.group('app')!r} on platform {m.group('platform')!r}: {error}"


def error_detail(resp: requests.Response) -> str:
    """SCDF's error messages from a response body (VndErrors or Spring's default)."""
    try:
        body = resp.json()
    except ValueError:
        text = (resp.text or "").strip()
        return text[:500] or resp.reason or "no details"
    if isinstance(body, dict):
        errors = (body.get("_embedded") or {}).get("errors")
        if isinstance(errors, list) and errors:
            msgs = [str(e.get("message", "")).strip() for e in errors if isinstance(e, dict)]
            msgs = [m for m in msgs if m]
            if msgs:
                # Several messages on separate lines read badly in one error line.
                return "; ".join(" ".join(short_install_error(m).split()) for m in dict.fromkeys(msgs))
        for key in ("message", "error"):
            if body.get(key):
                return str(body[key])
    if isinstance(body, list) and body and isinstance(body[0], dict) and body[0].get("message"):
        return str(body[0]["message"])
    return resp.reason or "no details"


def parse_manifest(text: str) -> dict[str, dict[str, Any]]:
    """Skipper's multi-document manifest -> {app label: spec}."""
    apps = {}
    for doc in yaml.safe_load_all(text):
        if not isinstance(doc, dict):
            continue
        name = (doc.get("metadata") or {}).get("name")
        spec = doc.get("spec") or {}
        if name:
            apps[str(name)] = {
                "resource": spec.get("resource"),
                "version": None if spec.get("version") is None else str(spec.get("version")),
                "applicationProperties": {
                    str(k): "" if v is None else str(v) for k, v in (spec.get("applicationProperties") or {}).items()
                },
                "deploymentProperties": {
                    str(k): "" if v is None else str(v) for k, v in (spec.get("deploymentProperties") or {}).items()
                },
            }
    return apps


# ---------------------------------------------------------------- client


class DataFlowClient:
    def __init__(self, url: str, credentials: Credentials | None = None, timeout: float = DEFAULT_TIMEOUT):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ScdfError(f"invalid server URL {redact_url(url)!r}: expected http(s)://host[:port]")
        if parts.username or parts.password:
            raise ScdfError("put credentials in --username/--password-file or SCDF_* variables, not in the URL")
        self.url = url.rstrip("/")
        self.timeout = timeout
        # Environment settings stay in force (HTTPS_PROXY/NO_PROXY, REQUESTS_CA_BUNDLE for a
        # server with a private CA), as for any requests-based tool.
        self.session = requests.Session()
        creds = credentials or Credentials()
        if creds.token:
            self.session.auth = _Bearer(creds.token)
        elif creds.username:
            self.session.auth = requests.auth.HTTPBasicAuth(creds.username, creds.password or "")

    def _request(self, method: str, path: str, what: str, *, ok=(200,), allow_404=False, **kw):
        url = f"{self.url}{path}"
        try:
            resp = self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kw)
        except requests.exceptions.Timeout:
            raise ScdfUnreachable(f"{what} failed: no answer from {self.url} within {self.timeout:.0f}s") from None
        except requests.exceptions.ConnectionError as exc:
            reason = _connection_reason(exc)
            raise ScdfUnreachable(
                f"{what} failed: cannot reach the Data Flow server at {self.url} ({reason})"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ScdfUnreachable(f"{what} failed: {type(exc).__name__} talking to {self.url}") from None
        if allow_404 and resp.status_code == 404:
            return None
        if resp.status_code in (401, 403):
            raise ScdfHttpError(
                what, resp.status_code, "not authorized (check --username/--password-file or --token-file)"
            )
        if resp.status_code not in ok:
            raise ScdfHttpError(what, resp.status_code, error_detail(resp))
        return resp

    @staticmethod
    def _json(resp, what: str):
        try:
            return resp.json()
        except ValueError:
            raise ScdfError(f"{what} failed: the server did not answer JSON (is this a Data Flow server?)") from None

    # -- server
    def about(self) -> dict:
        what = "reading server info (GET /about)"
        body = self._json(self._request("GET", "/about", what), what)
        if not isinstance(body, dict) or "versionInfo" not in body:
            raise ScdfError(f"{what} failed: {self.url} does not look like a Data Flow server")
        return body

    # -- apps
    def app_versions(self, name: str) -> list[dict]:
        """Registrations of app `name` of type app (all versions): name, version, uri, defaultVersion."""
        what = f"listing registered versions of app {name!r}"
        resp = self._request("GET", "/apps", what, params={"type": "app", "search": name, "size": 2000})
        body = self._json(resp, what)
        regs = (body.get("_embedded") or {}).get("appRegistrationResourceList") or []
        return [r for r in regs if r.get("name") == name and r.get("type") == "app"]

    def register_app(self, name: str, version: str, uri: str, metadata_uri: str | None, force: bool = False):
        data = {"uri": uri, "force": "true" if force else "false"}
        if metadata_uri:
            data["metadata-uri"] = metadata_uri
        self._request(
            "POST",
            f"/apps/app/{quote(name, safe='')}/{quote(version, safe='')}",
            f"registering app {name!r} version {version} ({uri})",
            ok=(200, 201),
            data=data,
        )

    def make_default(self, name: str, version: str):
        self._request(
            "PUT",
            f"/apps/app/{quote(name, safe='')}/{quote(version, safe='')}",
            f"making version {version} the default of app {name!r}",
            ok=(200, 202, 204),
        )

    # -- definitions
    def definition(self, stream: str) -> dict | None:
        what = f"reading stream definition {stream!r}"
        resp = self._request("GET", f"/streams/definitions/{quote(stream, safe='')}", what, allow_404=True)
        return None if resp is None else self._json(resp, what)

    def create_definition(self, stream: str, definition: str, description: str = ""):
        self._request(
            "POST",
            "/streams/definitions",
            f"creating stream definition {stream!r}",
            ok=(200, 201),
            data={"name": stream, "definition": definition, "description": description, "deploy": "false"},
        )

    def destroy(self, stream: str) -> bool:
        """Delete the definition (SCDF undeploys it first). False if there was none."""
        resp = self._request(
            "DELETE",
            f"/streams/definitions/{quote(stream, safe='')}",
            f"destroying stream {stream!r}",
            ok=(200, 204),
            allow_404=True,
        )
        return resp is not None

    # -- deployments
    def deploy(self, stream: str, properties: dict[str, str]):
        self._request(
            "POST",
            f"/streams/deployments/{quote(stream, safe='')}",
            f"deploying stream {stream!r}",
            ok=(200, 201),
            json=properties,
        )

    def update(self, stream: str, properties: dict[str, str]):
        body = {
            "releaseName": stream,
            "packageIdentifier": {"packageName": stream},
            "updateProperties": properties,
            "force": False,
            "appNames": [],
        }
        self._request(
            "POST",
            f"/streams/deployments/update/{quote(stream, safe='')}",
            f"updating deployed stream {stream!r}",
            ok=(200, 201),
            json=body,
        )

    def scale(self, stream: str, app: str, count: int):
        """Resize one deployed app (Skipper scales its running deployment; no new release)."""
        self._request(
            "POST",
            f"/streams/deployments/scale/{quote(stream, safe='')}/{quote(app, safe='')}/instances/{count}",
            f"scaling app {app!r} of stream {stream!r} to {count}",
            ok=(200, 201, 202),
        )

    def undeploy(self, stream: str) -> bool:
        resp = self._request(
            "DELETE",
            f"/streams/deployments/{quote(stream, safe='')}",
            f"undeploying stream {stream!r}",
            ok=(200, 204),
            allow_404=True,
        )
        return resp is not None

    def deployment(self, stream: str) -> dict | None:
        """GET /streams/deployments/{name}: status and (per app) deployer properties."""
        what = f"reading deployment of stream {stream!r}"
        resp = self._request(
            "GET",
            f"/streams/deployments/{quote(stream, safe='')}",
            what,
            params={"reuse-deployment-properties": "true"},
            allow_404=True,
        )
        return None if resp is None else self._json(resp, what)

    def runtime(self, stream: str) -> Any:
        """GET /runtime/streams?names=NAME: what Skipper reads from its platform per app and
        instance (see scdf.runtime)."""
        what = f"reading the runtime status of stream {stream!r} (GET /runtime/streams)"
        resp = self._request("GET", "/runtime/streams", what, params={"names": stream})
        return self._json(resp, what)

    def history(self, stream: str) -> list[dict]:
        what = f"reading release history of stream {stream!r}"
        resp = self._request("GET", f"/streams/deployments/history/{quote(stream, safe='')}", what, allow_404=True)
        if resp is None:
            return []
        body = self._json(resp, what)
        return body if isinstance(body, list) else []

    def manifest(self, stream: str, version: int) -> dict[str, dict[str, Any]]:
        """What Skipper recorded for release `version`: {label: resource, version, properties}."""
        what = f"reading the deployed manifest of stream {stream!r} (release {version})"
        resp = self._request("GET", f"/streams/deployments/manifest/{quote(stream, safe='')}/{version}", what)
        text = resp.text
        # Data Flow returns the YAML as a JSON string literal.
        try:
            decoded = json.loads(text)
            if isinstance(decoded, str):
                text = decoded
        except ValueError:
            pass
        try:
            return parse_manifest(text)
        except yaml.YAMLError:
            raise ScdfError(f"{what} failed: the manifest is not YAML") from None

    def current_release(self, stream: str) -> dict | None:
        """The release Skipper runs: the newest DEPLOYED one, else the newest not deleted.

        A failed upgrade leaves a newer FAILED release beside the DEPLOYED one it could
        not replace; what runs (and what a re-run must compare with) is the DEPLOYED one.
        """
        releases = [r for r in self.history(stream) if release_status(r) != "DELETED"]
        if not releases:
            return None
        deployed = [r for r in releases if release_status(r) == "DEPLOYED"]
        return max(deployed or releases, key=lambda r: int(r.get("version") or 0))

    def newest_release(self, stream: str) -> dict | None:
        releases = self.history(stream)
        return max(releases, key=lambda r: int(r.get("version") or 0)) if releases else None


def release_status(release: dict) -> str:
    return str(((release.get("info") or {}).get("status") or {}).get("statusCode") or "")


def release_description(release: dict) -> str:
    return " ".join(str((release.get("info") or {}).get("description") or "").split())


def _connection_reason(exc: Exception) -> str:
    text = str(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("Temporary failure in name resolution", "unknown host"),
        ("timed out", "timed out"),
        ("No route to host", "no route to host"),
        ("SSL", "TLS handshake failed"),
    ):
        if needle in text:
            return reason
    return type(exc).__name__

"""`tspipe scdf ...`: the SCDF fallback's commands (render, deploy, status, undeploy,
destroy, import): parsing, the calls to the server, what is printed and the exit code.

Exit codes: 0 done, 1 the server or the network refused, 2 bad input (pipeline file,
options, credentials).
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scdf = sub.add_parser(
        "scdf",
        help="deploy the pipeline on a Spring Cloud Data Flow server",
        description="The SCDF fallback: the same pipeline as an SCDF stream.",
    )
    cmds = scdf.add_subparsers(dest="scdf_command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, server: bool = True, file: bool = True):
        p = cmds.add_parser(name, help=help_text, description=help_text)
        if file:
            p.add_argument("-f", "--file", required=True, help="TimestampPipeline YAML file")
        if server:
            p.add_argument(
                "--server",
                default=os.environ.get("SCDF_SERVER_URL"),
                help="Data Flow server URL, e.g. http://localhost:9393 (env SCDF_SERVER_URL)",
            )
            p.add_argument("--username", help="basic auth user (env SCDF_USERNAME)")
            p.add_argument("--password-file", help="file holding the basic auth password (env SCDF_PASSWORD)")
            p.add_argument("--token-file", help="file holding a bearer token (env SCDF_TOKEN)")
            p.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)")
        return p

    add("render", "print the SCDF shell commands (app register, stream create, stream deploy)", server=False)
    d = add("deploy", "register the apps, create the stream and deploy it; only what differs changes")
    d.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait this long for the deployment to settle, then print its state (default 60)",
    )
    add("status", "print the stream's definition, state, app versions and per app what the platform reports")
    u = add("undeploy", "undeploy the stream (its definition stays)")
    u.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait this long for a running install/upgrade to finish and for the undeploy (default 60)",
    )
    x = add("destroy", "undeploy and delete the stream definition (registered apps stay)")
    x.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait this long for a running install/upgrade to finish first (default 60)",
    )
    i = add(
        "import",
        "print (YAML) the TimestampPipeline that reproduces a deployed stream of the recipe's shape",
        file=False,
    )
    i.add_argument("--stream", required=True, help="the deployed SCDF stream's name")
    i.add_argument(
        "--name",
        help="the pipeline's metadata.name (default: the pipeline `tspipe scdf deploy` deployed the stream from, "
        "else the stream name in lower case)",
    )
    i.add_argument(
        "--namespace",
        help="the pipeline's metadata.namespace (default: that pipeline's, else none: kubectl's current one)",
    )
    i.add_argument(
        "--brokers",
        help="Kafka brokers host:port,... when no app of the stream sets spring.cloud.stream.kafka.binder.brokers "
        "(the server's binder settings supply them); replaces the stream's own",
    )


def _err(msg: str) -> None:
    print(f"tspipe: {msg}", file=sys.stderr, flush=True)


def _out(msg: str) -> None:
    print(msg, flush=True)


def _load(path: str):
    from ..model import PipelineError, load_pipeline_file

    try:
        return load_pipeline_file(path)
    except FileNotFoundError:
        raise _Usage(f"pipeline file {path}: not found") from None
    except OSError as exc:
        raise _Usage(f"pipeline file {path}: cannot read it ({exc.strerror or exc})") from None
    except PipelineError as exc:
        raise _Usage(f"invalid pipeline file {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - YAML syntax errors and the like, in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _Usage(f"invalid pipeline file {path}: {first}") from None


class _Usage(Exception):
    pass


def _client(args):
    from .client import AuthError, DataFlowClient, ScdfError, resolve_credentials

    if not args.server:
        raise _Usage("--server URL (or SCDF_SERVER_URL) is required")
    try:
        creds = resolve_credentials(
            username=args.username, password_file=args.password_file, token_file=args.token_file
        )
    except AuthError as exc:
        raise _Usage(str(exc)) from None
    try:
        return DataFlowClient(args.server, creds, timeout=args.timeout)
    except ScdfError as exc:  # a malformed URL is a usage error
        raise _Usage(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from .client import ScdfError
    from .podshape import ImportRefused
    from .render import RenderError

    try:
        if args.scdf_command == "import":
            return _import(_client(args), args)
        pipeline = _load(args.file)
        if args.scdf_command == "render":
            from .render import render_script

            sys.stdout.write(render_script(pipeline))
            return EXIT_OK
        client = _client(args)
        return _COMMANDS[args.scdf_command](client, pipeline, args)
    except _Usage as exc:
        _err(str(exc))
        return EXIT_USAGE
    except RenderError as exc:
        _err(f"invalid pipeline file {args.file}: {exc}")
        return EXIT_USAGE
    except ImportRefused as exc:
        _err(f"cannot import stream {args.stream!r}: {exc}")
        return EXIT_FAILED
    except ScdfError as exc:
        _err(str(exc))
        return EXIT_FAILED


def _import(client, args) -> int:
    import yaml

    from .importer import import_stream
    from .podshape import ImportRefused

    name = args.stream
    d = client.definition(name)
    if d is None:
        raise ImportRefused(f"no stream {name!r} on {client.url}")
    release = client.current_release(name) if (d.get("status") or "undeployed") != "undeployed" else None
    if release is None:
        raise ImportRefused(f"stream {name!r} is not deployed: its app images and properties exist only in a release")
    manifest = client.manifest(name, int(release["version"]))
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()] if args.brokers else None
    result = import_stream(
        name,
        str(d.get("originalDslText") or d.get("dslText") or ""),
        manifest,
        name=args.name,
        namespace=args.namespace,
        brokers=brokers,
        description=d.get("description"),
    )
    for note in result.notes:
        _err(f"note: {note}")
    sys.stdout.write(yaml.safe_dump(result.resource, sort_keys=False, allow_unicode=True))
    return EXIT_OK


def _deploy(client, pipeline, args) -> int:
    from .client import ScdfError, release_description, release_status
    from .sync import PartialFailure, state_line, sync, wait_for_release, wait_for_state

    name = pipeline.stream_name
    try:
        result = sync(client, pipeline, progress=_out)
    except PartialFailure:
        raise
    except ScdfError as exc:
        # Failed while reading the server's state: nothing was sent yet.
        raise ScdfError(f"{exc}\nNothing was changed on the server.") from None
    if not result.done:
        _out(f"stream {name!r}: up to date, nothing changed")
    if any(s.kind == "update" for s in result.done):
        # Skipper upgrades in the background: new apps first, old ones removed once the new
        # ones are healthy. A failed upgrade leaves the previous release running.
        before = result.observed.release_version or 0
        rel = wait_for_release(client, name, before, args.wait)
        if rel is None or release_status(rel) in ("", "UNKNOWN"):
            _out(f"stream {name!r}: update still in progress after {args.wait:.0f}s")
        elif release_status(rel) != "DEPLOYED":
            raise ScdfError(
                f"updating stream {name!r} failed: Skipper recorded release {rel.get('version')} as "
                f"{release_status(rel)} ({release_description(rel)}); release {before} is still deployed. "
                "Run deploy again to retry."
            )
        else:
            _out(f"stream {name!r}: release {rel.get('version')} deployed")
    d = wait_for_state(client, name, args.wait) if result.done and args.wait > 0 else client.definition(name)
    _out(f"stream {name!r} {state_line(d)}")
    return EXIT_OK


def _status(client, pipeline, args) -> int:
    from .client import ScdfHttpError
    from .sync import state_line

    name = pipeline.stream_name
    try:
        d = client.definition(name)
    except ScdfHttpError as exc:
        if exc.status < 500:
            raise
        return _status_without_state(client, name, exc)
    if d is None:
        _err(f"stream {name!r} does not exist on {client.url}")
        return EXIT_FAILED
    _out(f"stream {name!r}")
    _out(f"definition: {d.get('originalDslText') or d.get('dslText')}")
    _out(state_line(d))
    release = client.current_release(name) if (d.get("status") or "undeployed") != "undeployed" else None
    if release is not None:
        manifest = client.manifest(name, int(release["version"]))
        _out(f"release: {release['version']}")
        for label, spec in manifest.items():
            _out(f"  {label}: {spec.get('resource')}:{spec.get('version')}")
        _runtime(client, name, list(manifest))
    return EXIT_OK


def _status_without_state(client, name: str, exc) -> int:
    """Data Flow computes a stream's state from Skipper's report of the platform; when that
    fails (Skipper cannot reach its Kubernetes API server, say) even the definition cannot
    be read. Show what the servers still hold (the release and its apps), each app named."""
    from ..components import APP_LABELS
    from .client import ScdfError

    _out(f"stream {name!r}")
    _out(
        f"state: unknown: Data Flow could not compute it ({exc}); its Skipper server could not read "
        "the apps' status from the platform (is the platform, e.g. its Kubernetes API server, reachable?)"
    )
    labels = list(APP_LABELS)
    try:
        release = client.current_release(name)
        if release is not None:
            manifest = client.manifest(name, int(release["version"]))
            labels = list(manifest)
            _out(f"release: {release['version']}")
            for label, spec in manifest.items():
                _out(f"  {label}: {spec.get('resource')}:{spec.get('version')}")
    except ScdfError as err:
        _out(f"release: not readable either ({err})")
    _runtime(client, name, labels)
    return EXIT_FAILED


def _runtime(client, name: str, labels: list[str]) -> None:
    """Per app what Skipper reads from its platform; a failed read is reported per app, not
    raised: the definition and release above are still worth showing."""
    from .client import ScdfError
    from .runtime import parse_runtime, summary, unknown_lines

    try:
        apps = parse_runtime(client.runtime(name), name)
    except ScdfError as exc:
        for line in unknown_lines(labels, str(exc)):
            _out(line)
        return
    _out(summary(apps))
    for app in apps:
        _out(f"  {app.line()}")


def _undeploy(client, pipeline, args) -> int:
    from .sync import state_line, wait_for_state, wait_until_idle

    name = pipeline.stream_name
    d = client.definition(name)
    if d is None:
        _out(f"stream {name!r} does not exist; nothing to undeploy")
        return EXIT_OK
    if (d.get("status") or "undeployed") == "undeployed":
        _out(f"stream {name!r} is not deployed; nothing to undeploy (its definition stays)")
        return EXIT_OK
    wait_until_idle(client, name, args.wait)
    client.undeploy(name)
    _out(f"stream {name!r}: undeploy requested")
    d = wait_for_state(client, name, args.wait) if args.wait > 0 else client.definition(name)
    _out(f"stream {name!r} {state_line(d)}")
    return EXIT_OK


def _destroy(client, pipeline, args) -> int:
    from .sync import wait_until_idle

    name = pipeline.stream_name
    if client.definition(name) is not None:
        wait_until_idle(client, name, args.wait)
    if client.destroy(name):
        _out(f"stream {name!r}: destroyed (registered apps are kept; other streams may use them)")
    else:
        _out(f"stream {name!r} does not exist; nothing to destroy")
    return EXIT_OK


_COMMANDS = {"deploy": _deploy, "status": _status, "undeploy": _undeploy, "destroy": _destroy}

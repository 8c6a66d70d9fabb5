"""The ``afisha`` command: run, deploy, config, migrate, status, events dlq."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from cluster import bootstrap
from cluster.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Afisha: the event platform on Ray.")
console = Console()

AddressOption = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster to join (e.g. auto or ray://host:10001)."),
]


def _progress(status: Any) -> bootstrap.Progress:
    started = time.monotonic()

    def update(message: str) -> None:
        status.update(f"[bold]{message}[/] [dim]({time.monotonic() - started:.0f}s)[/]")
        if not message.startswith("waiting"):
            console.log(message)

    return update


@app.command()
def run(address: AddressOption = None,
        health_timeout: Annotated[float, typer.Option(help="Seconds to wait for health.")] = 180
        ) -> None:
    """Start the whole platform (embedded defaults for what is not configured); Ctrl-C stops it."""
    settings = Settings()
    started = time.monotonic()
    with console.status("starting Afisha") as status:
        try:
            platform = bootstrap.start(settings, _progress(status),
                                       address=address or settings.ray_address,
                                       health_timeout=health_timeout)
        except bootstrap.StartupError as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from exc
    elapsed = time.monotonic() - started
    console.print(f"[green]Afisha is up[/] in {elapsed:.1f}s")
    console.print(f"  API          {platform.api_url}/api/v1")
    console.print(f"  Swagger UI   {platform.api_url}/docs")
    console.print(f"  Health       {platform.api_url}/actuator/health")
    if platform.runs_dashboard:
        console.print(f"  Ray dashboard {platform.dashboard_url}")
    for note in platform.notes:
        console.print(f"  {note}")
    console.print("Press Ctrl-C to stop.")
    _wait_for_signal()
    with console.status("stopping Afisha"):
        bootstrap.stop(platform)
    console.print("stopped")


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


@app.command()
def deploy(address: Annotated[str, typer.Option("--address", help="Ray cluster address.")]
           ) -> None:
    """Deploy (or update) the Serve application onto an existing Ray cluster and exit."""
    settings = Settings()
    missing = bootstrap.deploy_problems(settings)
    if missing:
        console.print("[red]error:[/] afisha deploy needs explicit settings (it generates no "
                      "secrets and picks no payment provider): " + "; ".join(missing))
        raise typer.Exit(2)
    platform = bootstrap.Platform(settings)
    with console.status("deploying") as status:
        progress = _progress(status)
        bootstrap.apply_migrations(settings, progress)
        bootstrap.connect_ray(settings, platform, address)
        bootstrap.deploy(settings)
        bootstrap.wait_healthy(platform.api_url, 180, progress)
    console.print(f"[green]deployed[/] to {address}; API at {platform.api_url}")


@app.command()
def config(output: Annotated[str | None, typer.Option(
        "--output", "-o", help="File to write (default: standard output).")] = None) -> None:
    """Write the Serve config file (serve deploy, KubeRay serveConfigV2) from the settings;
    secrets are left out (the nodes' environment or AFISHA_SECRETS_DIR provides them)."""
    from cluster.serve_config import render

    text = render(Settings())
    if output is None:
        typer.echo(text, nl=False)
        return
    Path(output).write_text(text)
    console.print(f"[green]wrote[/] {output}")


@app.command()
def migrate() -> None:
    """Apply database migrations for every service (idempotent)."""
    settings = Settings()
    platform = bootstrap.Platform(settings)
    try:
        with console.status("migrating") as status:
            settings = bootstrap.resolve_database(settings, platform, _progress(status))
            bootstrap.apply_migrations(settings, _progress(status))
    finally:
        bootstrap.stop(platform)
    console.print("[green]migrations applied[/]")


@app.command()
def status(url: Annotated[str | None, typer.Option(help="Gateway base URL.")] = None) -> None:
    """Show the health of every service and dependency of a running platform."""
    settings = Settings()
    base = url or f"http://{settings.http_host}:{settings.http_port}"
    try:
        body = httpx.get(f"{base}/actuator/health", timeout=10).json()
    except httpx.HTTPError as exc:
        console.print(f"[red]no platform answers at {base}:[/] {exc}")
        raise typer.Exit(1) from exc
    table = Table(title=f"Afisha at {base}: {body.get('status')}")
    for column in ("kind", "name", "status", "details"):
        table.add_column(column)
    for kind in ("services", "dependencies"):
        for name, item in body.get(kind, {}).items():
            details = {k: v for k, v in item.items() if k != "status"}
            colour = "green" if item.get("status") == "UP" else "red"
            table.add_row(kind[:-1] if kind == "services" else "dependency", name,
                          f"[{colour}]{item.get('status')}[/]", _short(details))
    console.print(table)
    if body.get("status") != "UP":
        raise typer.Exit(1)


events_app = typer.Typer(no_args_is_help=True, help="Domain events: dead letters.")
app.add_typer(events_app, name="events")


@events_app.command("dlq")
def dead_letter_queue(
    service: Annotated[list[str] | None, typer.Option(
        "--service", "-s", help="Consuming service(s) to look at (default: all).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many per service.")] = 100,
    requeue: Annotated[bool, typer.Option(
        "--requeue", help="Send the listed dead letters back to their consumers.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """List the dead letters of every consumer (RabbitMQ or embedded); --requeue retries them."""
    from messaging import dlq

    settings = Settings()
    platform = bootstrap.Platform(settings)
    try:
        if not settings.amqp_url:  # dead letters live in the consumers' tables
            settings = bootstrap.resolve_database(settings, platform, lambda _: None)
        letters = asyncio.run(dlq.dead_letters(settings, service, limit, requeue))
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    finally:
        bootstrap.stop(platform)
    if as_json:
        for letter in letters:
            typer.echo(json.dumps(dataclasses.asdict(letter)))
        return
    verb = "requeued" if requeue else "dead letters"
    table = Table(title=f"{verb} ({settings.transport}): {len(letters)}")
    for column in ("service", "message id", "type", "correlation id", "failed at", "reason"):
        table.add_column(column)
    for letter in letters:
        table.add_row(letter.service, letter.message_id, letter.type, letter.correlation_id,
                      letter.failed_at, letter.reason)
    console.print(table)


def _short(details: dict[str, Any]) -> str:
    parts = []
    for key, value in details.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k}={v.get('status', v)}" if isinstance(v, dict) else f"{k}={v}"
                              for k, v in value.items())
            parts.append(f"{key}: {inner}")
        else:
            parts.append(f"{key}={value}")
    return "; ".join(parts)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

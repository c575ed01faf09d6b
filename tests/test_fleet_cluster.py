"""Image sync to SeaweedFS as it scales out: a master, three volume servers with
every file on two of them, a filer with the S3 gateway. A volume server is
killed in the middle of a sync: every image still ends verified, uploaded once,
and readable with the card's checksum."""

from __future__ import annotations

import hashlib
import uuid

from fleet_servers import ADMIN, BUCKET, PROJECT
from test_fleet_sync import STATION, FakeClock, add_images
from conftest import make_config
from trapd.fleet.outbox import FleetDb
from trapd.fleet.sync import Syncer, object_key
from trapd.storage import Store


class KillsAVolumeServer:
    """The station's S3 client, which kills a volume server after `after` uploads."""

    def __init__(self, client, cluster, after: int) -> None:
        self._client, self._cluster, self._after = client, cluster, after
        self.puts = 0

    def put_object(self, **kwargs):
        self.puts += 1
        if self.puts == self._after:
            self._cluster.kill("volume1")
        return self._client.put_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_volume_server_lost_mid_sync_every_image_verified_once(s3_cluster, tmp_path):
    deployment = f"{STATION}-{uuid.uuid4().hex[:8]}"
    config = make_config(tmp_path, {"station": {"deployment_id": deployment}, "fleet": {
        "enabled": True, "project": PROJECT, "sync": {
            "enabled": True, "endpoint_url": s3_cluster.endpoint, "allow_insecure": True,
            "bucket": BUCKET,
            "credentials_file": str(s3_cluster.credentials_file(STATION, tmp_path / "s3.cred"))}}})
    store = Store(tmp_path / "storage", 0)
    db = FleetDb(tmp_path / "storage")
    try:
        frames = add_images(store, deployment, [200_000] * 24)
        client = KillsAVolumeServer(s3_cluster.client(STATION), s3_cluster, after=8)
        syncer = Syncer(config, store, db, client, wall_ns=FakeClock().wall_ns)
        runs = []
        while len(db.verified_media()) < len(frames) and len(runs) < 10:
            runs.append(syncer.run_once())
        assert client.puts >= 8, "the volume server was killed during the sync"
        assert db.verified_media() == {f["media_id"] for f in frames}
        admin = s3_cluster.client(ADMIN)
        for frame in frames:
            key = object_key(PROJECT, frame)
            assert len(admin.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]) == 1, key
            body = admin.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == frame["sha256"]
    finally:
        db.close()
        store.close()

"""`gcp-storage-emulator start --in-memory ...`, without the emulator's index dump on every write.

The emulator serialises its whole object index to JSON after every upload, even in memory, where that
copy is only read back when a server starts (so never, for an in-memory one). Each upload then costs
time in proportion to the objects already stored: `py-spy` on `tests/streamload.py --images 20000`
found the server busy in that dump, on a whole core, and the job waiting on it had slowed from 2.4 to
1.5 images/s by 4,000 images. This runs the same server with only that write skipped (`tests/servers.py` starts it so).

It also percent-encodes the object name in each object's `mediaLink` and `selfLink`, as GCS does
(`.../o/q%3F.png?generation=...`): the emulator writes the raw name there, so the client, which downloads
from `mediaLink`, asked for `.../o/q?.png?generation=...` and got a 404 for names holding `?`, `#` or `%`
(found by tests/test_trust.py; reading by a URL the client builds itself was always right).

    python tests/gcs_server.py start --host 127.0.0.1 --port P --in-memory [...]
"""

import sys
from urllib.parse import quote

from gcp_storage_emulator import storage
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.handlers import objects

_make_object_resource = objects._make_object_resource


def _object_resource_with_encoded_links(base_url, bucket_name, object_name, *args, **kwargs):
    resource = _make_object_resource(base_url, bucket_name, object_name, *args, **kwargs)
    raw, encoded = f"/o/{object_name}", f"/o/{quote(object_name, safe='')}"
    for link in ("mediaLink", "selfLink"):
        resource[link] = resource[link].replace(raw, encoded, 1)
    return resource


if __name__ == "__main__":
    objects._make_object_resource = _object_resource_with_encoded_links
    if "--in-memory" in sys.argv:
        storage.Storage._write_config_to_file = lambda self: None
    sys.exit(main(sys.argv[1:]))

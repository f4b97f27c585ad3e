"""`gcp-storage-emulator start --in-memory ...`, without the emulator's index dump on every write.

The emulator serialises its whole object index to JSON after every upload, even in memory, where that
copy is only read back when a server starts (so never, for an in-memory one). Each upload then costs
time in proportion to the objects already stored: `py-spy` on `tests/streamload.py --images 20000`
found the server busy in that dump, on a whole core, and the job waiting on it had slowed from 2.4 to
1.5 images/s by 4,000 images. This runs the same server with only that write skipped (`tests/servers.py` starts it so).

    python tests/gcs_server.py start --host 127.0.0.1 --port P --in-memory [...]
"""

import sys

from gcp_storage_emulator import storage
from gcp_storage_emulator.__main__ import main

if __name__ == "__main__":
    if "--in-memory" in sys.argv:
        storage.Storage._write_config_to_file = lambda self: None
    sys.exit(main(sys.argv[1:]))

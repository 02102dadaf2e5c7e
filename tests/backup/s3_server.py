"""moto's S3 over HTTPS, served by gevent:
``python -m tests.backup.s3_server PORT CERT KEY [ADDRESS]`` (127.0.0.1 unless an
address is given: containers reach it at their bridge's gateway).

moto's own ``--ssl`` server (werkzeug) drops TLS connections without a close_notify,
which pgBackRest's OpenSSL 3 refuses as an unexpected EOF; gevent closes them properly.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    create_backend_app,
)

if __name__ == "__main__":
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    address = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
    app = DomainDispatcherApplication(create_backend_app)
    WSGIServer((address, port), app, certfile=cert, keyfile=key, log=None).serve_forever()

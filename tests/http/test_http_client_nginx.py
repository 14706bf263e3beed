"""HttpClient against nginx (a second real server), when nginx is installed.

A private nginx runs on a free port with its own prefix under pytest's tmp
directory: static files (Content-Length bodies, HEAD, ranges untouched),
`return 301/307`, a small `keepalive_requests` (nginx answers the last
request of a connection with `Connection: close`) and a short
`keepalive_timeout` (nginx closes idle connections the pool holds).
"""
import os
import shutil
import socket
import subprocess
import time

import pytest

import flowcoro
from flowcoro.http import HttpClient

from http_client_helpers import run

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"),
                       reason="nginx is not installed"),
]

CONF = """
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 3;
    keepalive_timeout 1s;
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/www;
        location = /moved {{ return 301 /small.txt; }}
        location = /temp {{ return 307 /small.txt; }}
        location = /echo-method {{ return 200 "$request_method $content_length\\n"; }}
    }}
}}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("http_client_nginx")
    www = prefix / "www"
    www.mkdir()
    (www / "small.txt").write_bytes(b"small file\n")
    big = bytes(range(256)) * (6 * 4096)           # 6 MiB
    (www / "big.bin").write_bytes(big)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(CONF.format(prefix=prefix, port=port, user=user))
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([exe, "-c", str(conf), "-p", str(prefix)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.poll() is not None else ""
                proc.kill()
                pytest.skip(f"nginx did not start: {err.strip()[:300]}")
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", big
    proc.terminate()
    proc.wait(5)
    proc.stderr.close()


def test_static_files_keepalive_limit_and_redirects(loop, nginx):
    base, big = nginx

    async def main():
        async with HttpClient(base) as c:
            # keepalive_requests 3: every third answer carries Connection: close
            # and the pool opens a new connection; no request fails.
            closes = []
            for i in range(7):
                r = await c.get("/small.txt")
                assert r.content == b"small file\n"
                assert r.headers["server"].startswith("nginx")
                closes.append(r.headers.get("connection"))
                assert c.idle_connections() == (0 if closes[-1] == "close" else 1)
            assert closes.count("close") == 2
            r = await c.head("/big.bin")
            assert r.content == b"" and int(r.headers["content-length"]) == len(big)
            r = await c.get("/moved")
            assert r.content == b"small file\n" and r.history[0].status == 301
            r = await c.post("/temp", data=b"abc")
            # 307 kept POST; nginx answers POST to a static file with 405.
            assert r.status == 405 and r.history[0].status == 307
            r = await c.get("/missing")
            assert r.status == 404 and r.headers["content-type"].startswith("text/html")
            r = await c.put("/echo-method", data=b"12345")
            assert r.text() == "PUT 5\n"
    run(loop, main())


def test_stream_big_file_and_idle_close(nginx):
    base, big = nginx

    async def main():
        async with HttpClient(base) as c:
            async with c.stream("GET", "/big.bin") as r:
                got = bytearray()
                async for chunk in r.iter_bytes():
                    got += chunk
            assert bytes(got) == big
            assert c.idle_connections() == 1
            # keepalive_timeout 1s: nginx closes the pooled connection; the
            # next request notices and uses a new one.
            await __import__("asyncio").sleep(1.3)
            assert (await c.get("/small.txt")).content == b"small file\n"
    flowcoro.run(main())

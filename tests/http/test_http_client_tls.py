"""HttpClient over TLS (stdlib ssl), against aiohttp's server with a trustme CA."""
import ssl

import pytest
import trustme
from aiohttp import web

import flowcoro
from flowcoro.errors import ConnectError
from flowcoro.http import HttpClient

from http_client_helpers import aiohttp_server, run

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


def app():
    a = web.Application()

    async def hello(request):
        return web.Response(text=f"secure {request.secure}")

    async def big(request):
        return web.Response(body=b"t" * 300000)

    a.router.add_get("/", hello)
    a.router.add_get("/big", big)
    return a


def test_tls_verified_with_context_and_ca_file(loop, ca, server_ctx, tmp_path):
    async def main():
        async with aiohttp_server(app(), ssl=server_ctx) as base:
            client_ctx = ssl.create_default_context()
            ca.configure_trust(client_ctx)
            async with HttpClient(base, verify=client_ctx) as c:
                r = await c.get("/")
                assert r.text() == "secure True"
                assert len((await c.get("/big")).content) == 300000
                assert (await c.get("/")).status == 200
                assert c.idle_connections() == 1     # kept alive over TLS
            pem = tmp_path / "ca.pem"
            ca.cert_pem.write_to_path(str(pem))
            async with HttpClient(verify=str(pem)) as c:
                # The certificate names localhost too.
                url = base.replace("127.0.0.1", "localhost")
                assert (await c.get(url + "/")).text() == "secure True"
    run(loop, main())


def test_tls_untrusted_or_wrong_name_fails(ca, server_ctx):
    async def main():
        async with aiohttp_server(app(), ssl=server_ctx) as base:
            async with HttpClient(base) as c:          # system CAs do not know trustme's
                with pytest.raises(ConnectError) as ei:
                    await c.get("/")
                assert isinstance(ei.value.__cause__, ssl.SSLCertVerificationError)
            other = trustme.CA()
            ctx = ssl.create_default_context()
            other.configure_trust(ctx)
            async with HttpClient(base, verify=ctx) as c:
                with pytest.raises(ConnectError):
                    await c.get("/")
            async with HttpClient(base, verify=False) as c:
                assert (await c.get("/")).text() == "secure True"
    flowcoro.run(main())


def test_tls_wrong_host_name(ca, tmp_path):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("example.org").configure_cert(ctx)

    async def main():
        async with aiohttp_server(app(), ssl=ctx) as base:
            pem = tmp_path / "ca.pem"
            ca.cert_pem.write_to_path(str(pem))
            async with HttpClient(base, verify=str(pem)) as c:
                with pytest.raises(ConnectError, match="127.0.0.1"):
                    await c.get("/")
    flowcoro.run(main())

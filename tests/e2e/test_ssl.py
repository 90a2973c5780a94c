"""SSL end to end: nginx serves HTTPS on SSL_PORT with the operator's
certificate, PUBLIC_PORT redirects keeping path and query, a release under
HTTPS load fails no request, and `check` judges the certificate files."""

import loadgen
import loophost as lh  # `loophost` is the fixture
from sslkit import make_cert, ssl_project
from traffic import https_get, settled, tls_context


def test_https_release_redirect_and_no_failed_request_under_load(make_project, sample_app,
                                                                 tmp_path, readable_deploy_dir):
    project = ssl_project(make_project, tmp_path, deploy_dir=readable_deploy_dir)
    name, port = project.server_name, project.ssl_port
    ctx = tls_context(project.cert)

    def get(path="/version"):
        return https_get(port, path, name, ctx)

    project.fab("setup", check=0)
    status, headers, body = get()
    assert (status, headers.get("x-deploy-colour"), body.strip()) == (200, "blue", "v1"), body

    # PUBLIC_PORT answers with a redirect to SSL_PORT that keeps path and query.
    status, headers, _ = project.get("/some/path?a=1&b=two%20words", host=name)
    assert status == 301
    assert headers["location"] == f"https://{name}:{port}/some/path?a=1&b=two%20words"
    assert headers.get("x-deploy-colour") == "blue"

    # ...except ACME challenges, served from DEPLOY_DIR/acme for certbot --webroot.
    challenges = project.deploy_dir / "acme" / ".well-known" / "acme-challenge"
    challenges.mkdir(parents=True)
    (challenges / "token-123").write_text("token-123.thumbprint")
    status, _, body = project.get("/.well-known/acme-challenge/token-123", host=name)
    assert (status, body) == (200, "token-123.thumbprint")

    # A release under HTTPS load (a fresh TLS connection per request) fails
    # nothing, and PUBLIC_PORT redirects to the same path on HTTPS throughout.
    sample_app.commit("v2")
    https = loadgen.Load(port, host=name, cafile=project.cert, rate_fresh=150,
                         threads_fresh=3, rate_keepalive=0, timeout=5, max_seconds=300,
                         name="https")
    redirect = loadgen.Load(project.public_port, host=name, redirect_to=f"https://{name}:{port}",
                            rate_fresh=30, threads_fresh=1, rate_keepalive=0, timeout=5,
                            max_seconds=300, name="http -> https")
    with https, redirect:
        https.wait_for(30)
        result = project.fab("release", check=0)
        https.wait_for(https.sent + 30)
    assert "https :%d answers from green" % port in result.stdout, result.stdout
    https.require(min_requests=200)
    redirect.require(min_requests=50)
    assert set(https.summary().colours) == {"blue", "green"}, https.summary()

    status, headers, body = settled(get, lambda s, h, b: h.get("x-deploy-colour") == "green")
    assert (status, headers.get("x-deploy-colour"), body.strip()) == (200, "green", "v2"), body
    # The certificate nginx presents is ours (verified against it as the only CA).
    status, _, body = https_get(port, "/health", name, ctx)
    assert status == 200 and body.strip() == "ok"


def test_check_verifies_the_certificate_files_and_their_expiry(make_project, tmp_path):
    project = ssl_project(make_project, tmp_path, days=90)
    result = project.fab("check", check=0)
    assert "certificate" in result.stdout and "valid until" in result.stdout, result.stdout
    assert "SSL_CERT_FILE  ok" in result.stdout, result.stdout

    cert, key = make_cert(tmp_path / "certs", project.server_name, 10)
    project.set(SSL_CERT_FILE=cert, SSL_KEY_FILE=key)
    result = project.fab("check", check=0)  # a warning, not a failure
    assert "expires within 21 days" in result.stdout, result.stdout

    project.set(SSL_KEY_FILE=tmp_path / "certs" / "missing.key")
    result = project.fab("check", check=1)
    assert "SSL_KEY_FILE" in result.stdout and "missing or unreadable" in result.stdout


def test_two_apps_share_the_https_port_by_sni(make_project, sample_app, tmp_path):
    shop = ssl_project(make_project, tmp_path)
    blog_app = lh.SampleApp(tmp_path / "blog-app")
    blog = make_project(app=blog_app)
    name = f"{blog.name}.test"
    cert, key = make_cert(tmp_path / "certs", name, 90)
    blog.set(SERVER_NAME=name, SSL_CERT_FILE=cert, SSL_KEY_FILE=key, SSL_PORT=shop.ssl_port,
             PUBLIC_PORT=shop.public_port)
    sample_app.commit("shop-1")
    blog_app.commit("blog-1")
    shop.fab("setup", check=0)
    blog.fab("setup", check=0)

    # One port, two certificates: each name gets its own, verified as the only CA.
    for server_name, ca, version in ((shop.server_name, shop.cert, "shop-1"),
                                     (name, cert, "blog-1")):
        ctx = tls_context(ca)
        status, headers, body = settled(
            lambda: https_get(shop.ssl_port, "/version", server_name, ctx),
            lambda s, h, b: s == 200)
        assert (status, body.strip()) == (200, version), (server_name, body)
        status, headers, _ = shop.get("/x?y=1", host=server_name)
        assert headers.get("location") == f"https://{server_name}:{shop.ssl_port}/x?y=1"

    result = blog.fab("check", check=0)
    assert f"shared by name with {shop.nginx_file}" in result.stdout, result.stdout

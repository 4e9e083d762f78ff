#!/usr/bin/env python3
"""Writes the hand-made seed inputs into fuzz/corpus/<target>/ (file name: sha1 of the bytes,
as libFuzzer names them). The committed corpus is these seeds plus what fuzzing found, minimised
with `cargo fuzz cmin`; rerunning this script only adds seeds back."""
import hashlib, os, re, sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def rust_literals(path):
    """Every "..." string literal in the #[cfg(test)] part of a Rust file, unescaped."""
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    text = text[text.find("#[cfg(test)]"):]
    out = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', text):
        s = m.group(1)
        s = re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda x: chr(int(x.group(1), 16)), s)
        s = (s.replace("\\\\", "\x00BS\x00").replace("\\t", "\t").replace("\\n", "\n")
             .replace("\\r", "\r").replace("\\0", "\0").replace('\\"', '"'))
        s = re.sub(r"\\x([0-9a-fA-F]{2})", lambda x: chr(int(x.group(1), 16)), s)
        out.append(s.replace("\x00BS\x00", "\\").encode("utf-8"))
    return out


def write(target, items):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for b in items:
        with open(os.path.join(d, hashlib.sha1(b).hexdigest()), "wb") as f:
            f.write(b)


rd = [s for s in rust_literals("src/auth/redirect.rs") if s]
rd += [b"/", b"/a/b?c=d#e", b"https://app.example.com/ok", b"https://x.apps.example.com/",
       b"http://127.0.0.1:8080/x", b"https://[::1]:8443/", b"https://a.example.org/p",
       b"/Auth/Callback", b"/auth/callback/../x", b"https://APP.EXAMPLE.COM:443/%2e%2e/x"]
write("redirect", rd)

write("path", [s for s in rust_literals("src/http/path.rs") if s.startswith(b"/") or len(s) < 40])

M = {i: bytes([i]) for i in range(1, 9)}
session = [b"\x00" + x for x in [
    b"\x06=\x01", b"\x06=\x02", b"\x06=\x03", b"\x06=\x04", b"\x06=\x05", b"\x06=\x01; \x06=\x01",
    b'\x06="\x01"', b"a=b; \x06=\x01; c", b"\x06", b"\x06=", b"x=1\n\x06=\x02", b"\x06 = \x01 ;",
]] + [b"\x01\x05\x01", b"\x01\x5f\x00", b"\x01\x10\x20"]
write("session_cookie", session)

login = [b"\x00" + x for x in [
    b"\x01\x00\x01", b"\x02\x00\x02", b"\x03\x00\x03", b"\x04\x00\x04", b"\x05\x00\x05",
    b"\x01\x00\x06", b"\x01\x00\x07", b"\x01\x00\x08; \x01", b"\x01\x00\x06\n\x01",
    b"\x04\x00\x01;\x04", b"\x01\x00", b"x\x00\x01", b"\x01x\x00\x01",
]] + [b"\x01\x10\x01", b"\x01\x30\x00"]
write("login_cookie", login)

H = (b"X-Auth-Request-User: mallory\nX_Auth_Request_User: m\nx-auth-request.email: e\n"
     b"connection: upgrade, x-forwarded-for, Keep-Alive\nupgrade: websocket\n"
     b"x-forwarded-for: 1.2.3.4\nx-forwarded-for: 5.6.7.8\nX-Real-IP: 1.1.1.1\n"
     b"forwarded: for=1.2.3.4\nx-forwarded-proto: http, https\nx_forwarded_host: evil\n"
     b"keep-alive: 1\nx.email: e\nremote_user: r\nx-claim-dept: d\ncookie: a=b\n"
     b"x-forwarded-user: u\nte: trailers\naccept: */*\n")
headers = [b"\x00" + H, b"\x80" + H, b"\x01" + H, b"\x82" + H,
           b"\x00connection: close\nupgrade: h2c\nhttp2-settings: x\n",
           b"\x80connection: upgrade\nupgrade: WebSocket\nx-forwarded-host: ,a\n",
           b"\x00upgrade: websocket, h2c\nconnection: Upgrade\n",
           b"\x81x-forwarded-proto: \nx-forwarded-for: \n"]
write("headers", headers)

BASE = b"""[server]
listen = "127.0.0.1:4180"
public_url = "https://app.example.com"

[oidc]
issuer = "https://idp.example.com/realms/main"
client_id = "portcullis"
client_secret = "s3cret-value-for-fuzzing"

[session]
cookie_secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

[headers]

[[route]]
path = "/"
upstream = "http://127.0.0.1:8080"
"""
FULL = b"""[server]
listen = "[::1]:8443"
public_url = "http://App.Example.COM.:8080/"
trusted_proxies = ["10.0.0.0/8", "::1"]
shutdown_timeout = "0s"
request_timeout = "2m 30s"
max_header_bytes = 1024
max_headers = 1000
header_read_timeout = "5s"
keepalive_timeout = "1m"
max_connections = 1

[oidc]
issuer = "http://127.0.0.1:9000/"
client_id = "c"
client_secret = "${CLIENT_SECRET}"
scopes = ["openid", "offline_access"]
callback_path = "/auth/cb"
groups_claim = "roles"
extra_auth_params = { prompt = "login", acr_values = "mfa" }

[session]
cookie_name = "sid"
cookie_secret = ["${COOKIE_SECRET}", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIj"]
cookie_domain = ".Example.COM"
same_site = "strict"
lifetime = "8h"
idle_timeout = "8h"
refresh = false
store = "memory"
max_sessions = 5

[headers]
user = "X-User"
email = ""
access_token = "X-Token"
authorization_bearer_id_token = true

[headers.claims]
"X-Zeta" = "zeta"
"X-Alpha" = "alpha"

[[route]]
host = "*.Example.com"
path = "/api/"
upstream = "https://10.1.2.3:443/base/"
allow_emails = ["Alice@Example.com"]
allow_email_domains = ["Example.org"]
allow_groups = ["admins"]

[[route]]
host = "[::1]"
path = "/public"
upstream = "http://[::1]:9000"
auth = "public"
preserve_host = true
allow_preflight = true
"""
example = open(os.path.join(ROOT, "config", "portcullis.toml"), "rb").read()
example = b"\n".join(l for l in example.split(b"\n") if b"_file" not in l)
example = example.replace(b"PORTCULLIS_CLIENT_SECRET", b"CLIENT_SECRET").replace(
    b"PORTCULLIS_COOKIE_SECRET", b"COOKIE_SECRET")
config = [BASE, FULL, example, b"", b"[server]\n", b"a = 1\n[[route]]\n",
          BASE.replace(b'path = "/"', b'path = "/a/../b"'),
          BASE.replace(b"[headers]", b'[headers]\nuser = "Cookie"'),
          BASE.replace(b"[session]", b'[session]\nsame_site = "none"\ncookie_name = "__Host-x"'),
          BASE.replace(b"https://app", b"http://app"),
          BASE + b'\n[[route]]\nhost = "*.apps.example.com"\npath = "/x"\nupstream = "http://h"\n',
          BASE.replace(b'"https://idp', b'"${NOPE}https://idp'),
          # Regression: an unroutable callback path was accepted (fixed in check_callback_path).
          BASE.replace(b"[session]", b'callback_path = "/auth/./cb"\n\n[session]')]
write("config", config)
print("seeds written under", CORPUS)

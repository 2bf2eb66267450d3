"""A real SMTP server for the e-mail tests: aiosmtpd, installed by
`cargo xtask setup`. Accepts AUTH (PLAIN/LOGIN) for one user: without TLS
(a local relay), or, given a certificate and key, only after STARTTLS.
Prints `READY <port>` once listening, then one JSON line per message
received: envelope, the user who authenticated, whether the session was
encrypted, and the raw message.

Usage: smtpd.py PORT USER PASSWORD [CERT KEY]"""
import logging
import json
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = sys.argv[2], sys.argv[3]
logging.disable(logging.WARNING)


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == USER
        and auth_data.password.decode() == PASSWORD
    )
    return AuthResult(success=ok, handled=False)


class Handler:
    async def handle_DATA(self, server, session, envelope):
        print(
            json.dumps(
                {
                    "from": envelope.mail_from,
                    "to": envelope.rcpt_tos,
                    "user": session.authenticated and USER,
                    "tls": session.ssl is not None,
                    "data": envelope.content.decode("utf8", "replace"),
                }
            ),
            flush=True,
        )
        return "250 Message accepted for delivery"


tls = None
if len(sys.argv) > 5:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(sys.argv[4], sys.argv[5])
controller = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=int(sys.argv[1]),
    authenticator=authenticate,
    auth_require_tls=tls is not None,
    auth_required=True,
    tls_context=tls,
    require_starttls=tls is not None,
)
controller.start()
print(f"READY {controller.port}", flush=True)
try:
    sys.stdin.read()  # until the test drops the pipe
finally:
    controller.stop()

"""irctest controller for chat-server's IRC listener.

`cargo xtask irctest` runs irctest's server tests with `--controller chatserver`, this directory on
PYTHONPATH and the server binary in CHAT_SERVER_BIN. Each test gets a fresh server: its own data
directory (a real SQLite store), the IRC listener on the port irctest picked, the native listener
on another free port, and the limits a test suite needs out of its way (connection bursts, flood
control, password hashing cost), as ergo's and ngIRCd's controllers configure theirs.
"""

import os
import subprocess
from typing import Optional, Set, Type

from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.cases import BaseServerTestCase
from irctest.runner import NotImplementedByController
from irctest.specifications import Capabilities, OptionalBehaviors


class ChatServerController(BaseServerController, DirectoryBasedController):
    software_name = "chat-server"
    _port_wait_interval = 0.01
    supported_sasl_mechanisms: Set[str] = {"PLAIN"}
    supports_sts = False
    # A mute is a ban with `m:` before the mask (`EXTBAN=,m`).
    extban_mute_char = "m"

    # What the listener offers: a test of one of these that cannot get it fails, not skips.
    capabilities = frozenset(
        (
            Capabilities.AWAY_NOTIFY,
            Capabilities.BATCH,
            Capabilities.ECHO_MESSAGE,
            Capabilities.LABELED_RESPONSE,
            Capabilities.MESSAGE_TAGS,
            Capabilities.MULTILINE,
            Capabilities.MULTI_PREFIX,
            Capabilities.SERVER_TIME,
            Capabilities.SETNAME,
        )
    )

    optional_behaviors = frozenset(
        (
            OptionalBehaviors.CAP_REQ_MINUS,
            OptionalBehaviors.INVITE_OVERRIDES_LIMIT,
            OptionalBehaviors.MULTI_JOIN,
            OptionalBehaviors.MULTI_KICK,
            OptionalBehaviors.MULTI_PRIVMSG,
        )
    )

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str],
        websocket_hostname: Optional[str],
        websocket_port: Optional[int],
    ) -> None:
        if password is not None:
            raise NotImplementedByController("PASS (a server password)")
        assert self.proc is None
        self.port = port
        self.hostname = hostname
        self.create_config()
        assert self.directory
        (_, native_port) = self.get_hostname_and_port()
        # irctest picks ports on 0.0.0.0; the server listens on loopback (where a connection
        # to 0.0.0.0 arrives), so plaintext needs no --allow-plaintext.
        hostname = "127.0.0.1"
        binary = os.environ.get("CHAT_SERVER_BIN", "chat-server")
        args = [
            binary,
            "--data-dir",
            str(self.directory / "data"),
            "--listen",
            f"{hostname}:{native_port}",
            "--metrics-listen",
            "off",
            "--server-name",
            "My.Little.Server",
            # IRC clients are never put in a default room; with none, native ones are not
            # either, and LIST shows only the rooms a test made.
            "--default-room",
            "none",
            "--operator",
            "operuser",
            "--max-per-ip",
            "10000",
            "--connect-burst",
            "10000",
            "--connect-rate",
            "10000",
            "--flood-burst",
            "10000",
            "--flood-rate",
            "10000",
            "--room-create-burst",
            "10000",
            "--room-create-rate",
            "10000",
            "--max-rooms-per-guest",
            "0",
            "--password-memory-kib",
            "64",
            "--password-iterations",
            "1",
            "--min-password",
            "1",
            "--log",
            "warn",
        ]
        if ssl:
            self.gen_ssl()
            args += [
                "--irc-tls-listen",
                f"{hostname}:{port}",
                "--tls-cert",
                str(self.pem_path),
                "--tls-key",
                str(self.key_path),
            ]
        else:
            args += ["--irc-listen", f"{hostname}:{port}"]
        if websocket_port is not None:
            args += ["--irc-ws-listen", f"{hostname}:{websocket_port}"]
        self.proc = self.execute(args)
        # The operator irctest opers up as: an account of that name, made before the test.
        self.wait_for_port()
        add = subprocess.run(
            [
                binary,
                "accounts",
                "--data-dir",
                str(self.directory / "data"),
                "add",
                "operuser",
                "--password-stdin",
            ],
            input=b"operpassword\n",
            capture_output=True,
        )
        if add.returncode != 0:
            raise RuntimeError(f"cannot add the operator account: {add.stderr!r}")

    def registerUser(
        self,
        case: BaseServerTestCase,
        username: str,
        password: Optional[str] = None,
    ) -> None:
        # Over IRC, as a user would: draft/account-registration's REGISTER.
        assert password
        client = case.addClient(show_io=False)
        case.sendLine(client, "CAP LS 302")
        case.sendLine(client, "NICK " + username)
        case.sendLine(client, "USER r e g :user")
        case.sendLine(client, "CAP END")
        while case.getRegistrationMessage(client).command != "001":
            pass
        case.getMessages(client)
        case.sendLine(client, "REGISTER * * " + password)
        msgs = case.getMessages(client)
        assert any(
            m.command == "REGISTER" and m.params[:1] == ["SUCCESS"] for m in msgs
        ), f"registration of {username} failed: {msgs}"
        case.sendLine(client, "QUIT")
        case.assertDisconnected(client)


def get_irctest_controller_class() -> Type[ChatServerController]:
    return ChatServerController

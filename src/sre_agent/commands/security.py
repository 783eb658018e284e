"""``sre-agent security ...``: decision-signing keys and the Kafka ACL recipe.

::

    sre-agent security keygen        # a new Ed25519 key: PEM for the Secret, public key, id
    sre-agent security public-key    # the configured key's public half (for consumers)
    sre-agent security acls --agent-user sre-agent [--ingest-user fluent-bit] \\
        [--reader-user actions-reader]   # kafka-acls.sh commands for this configuration

The public key is what an external consumer of ``sre-actions`` verifies the
``signature`` of each action with (see ``docs/deploy.md``, "Trust").
"""

from __future__ import annotations

import argparse
import shlex

from ..cli import SettingsFactory, command
from ..processors.signing import Signer, public_pem

__all__: list[str] = []


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["keygen", "public-key", "acls"],
                   help="keygen: a new signing key pair; public-key: the public keys of the "
                        "configured key ring; acls: print the Kafka ACL commands")
    p.add_argument("--agent-user", default="sre-agent", help="the workers' SASL user (acls)")
    p.add_argument("--ingest-user", default=None, help="a producer of the input topics (acls)")
    p.add_argument("--reader-user", default=None,
                   help="a consumer of sre-actions / action-results (acls)")
    p.add_argument("--bootstrap-server", default="\"$BOOTSTRAP\"",
                   help="for the printed commands (default: the shell variable BOOTSTRAP)")
    p.add_argument("--command-config", default="admin.properties",
                   help="the admin client properties for the printed commands")


@command("security", "signing keys (keygen, public-key) and the Kafka ACL recipe (acls)", _args)
def _security(args: argparse.Namespace, settings: SettingsFactory) -> int:
    if args.action == "keygen":
        signer = Signer.generate()
        print(f"# key id {signer.key_id}; store the private key in a Secret as "
              "SRE_AGENT_SECURITY__SIGNING_KEY")
        print(signer.private_pem(), end="")
        print(public_pem(signer.public), end="")
        return 0
    s = settings()
    if args.action == "public-key":
        from ..streams.services import load_keys

        keys = load_keys(s)
        for kid, key in sorted(keys.keyring.public_keys().items()):
            mark = " (signing)" if kid == keys.signer.key_id else ""
            print(f"# key id {kid}{mark}")
            print(public_pem(key), end="")
        return 0
    from ..sinks.kafka import acl_recipe

    for argv in acl_recipe(s, args.agent_user, args.ingest_user, args.reader_user):
        print(f"kafka-acls.sh --bootstrap-server {args.bootstrap_server} "
              + shlex.join(["--command-config", args.command_config, *argv]))
    return 0

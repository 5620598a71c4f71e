"""The guard table over nfnetlink, through pyroute2, without the nft command.

`apply` sends the table, its three chains and its rules in one batch, so the kernel takes all or
nothing, as `nft -f` does. The expressions are the ones nft 1.0 compiles wg-quick's rules into
(`nft --debug=netlink` prints them as the comments below show).
"""

from __future__ import annotations

import struct
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_NFTABLES, nfgen_msg
from pyroute2.netlink.nfnetlink.nftsocket import (
    NFT_MSG_DELTABLE,
    NFT_MSG_GETTABLE,
    NFT_MSG_NEWCHAIN,
    NFT_MSG_NEWRULE,
    NFT_MSG_NEWTABLE,
    NFTSocket,
    nft_chain_msg,
    nft_rule_msg,
    nft_table_msg,
)

from wgpy.quick.firewall import (
    IPPROTO_UDP,
    MANGLE_PRIORITY,
    PRERAW_PRIORITY,
    RTN_LOCAL,
    GuardTable,
)
from wgpy.uapi import IPAddress

Attrs = dict[str, Any]

NFPROTO_UNSPEC = 0
FAMILIES = {"inet": 1, "ip": 2, "arp": 3, "netdev": 5, "bridge": 7, "ip6": 10}
FAMILY_NAMES = {number: name for name, number in FAMILIES.items()}

NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NF_INET_PRE_ROUTING = 0
NF_INET_POST_ROUTING = 4
NF_DROP = 0
NFT_REG_VERDICT = 0
NFT_REG_1 = 1
NFT_CMP_EQ = 0
NFT_CMP_NEQ = 1
NFT_PAYLOAD_NETWORK_HEADER = 1
NFT_META_MARK = 3
NFT_META_IIFNAME = 6
NFT_META_L4PROTO = 16
NFT_CT_MARK = 3
NFTA_FIB_F_SADDR = 1
NFT_FIB_RESULT_ADDRTYPE = 3
IFNAMSIZ = 16
# Where the destination address sits in the network header.
DADDR_OFFSET = {4: 16, 6: 24}


def available() -> bool:
    """Whether the kernel answers nftables requests (wg-quick asks whether `nft` exists)."""
    try:
        tables()
    except (OSError, NetlinkError):
        return False
    return True


def tables() -> list[tuple[str, str]]:
    """(family, name) of every table, as `nft list tables` prints them."""
    with NFTSocket(nfgen_family=NFPROTO_UNSPEC) as nft:
        replies = nft.request_get(nfgen_msg(), NFT_MSG_GETTABLE, NLM_F_REQUEST | NLM_F_DUMP)
        return [
            (FAMILY_NAMES.get(reply["nfgen_family"], str(reply["nfgen_family"])), name)
            for reply in replies
            if (name := reply.get_attr("NFTA_TABLE_NAME")) is not None
        ]


def apply(guard: GuardTable) -> None:
    """Add the guard table, its chains and rules, in one transaction."""
    _batch(FAMILIES[guard.nft_family], guard_messages(guard))


def delete_table(family: str, name: str) -> None:
    message = _message(nft_table_msg, NFT_MSG_DELTABLE, {"NFTA_TABLE_NAME": name}, flags=0)
    _batch(FAMILIES[family], [message])


def guard_messages(guard: GuardTable) -> list[nfgen_msg]:
    """The table, its chains preraw, premangle and postmangle, then its rules, in nft's order."""
    table = guard.name
    messages = [_message(nft_table_msg, NFT_MSG_NEWTABLE, {"NFTA_TABLE_NAME": table})]
    attrs: Attrs
    for chain, hook, priority in (
        ("preraw", NF_INET_PRE_ROUTING, PRERAW_PRIORITY),
        ("premangle", NF_INET_PRE_ROUTING, MANGLE_PRIORITY),
        ("postmangle", NF_INET_POST_ROUTING, MANGLE_PRIORITY),
    ):
        attrs = {
            "NFTA_CHAIN_TABLE": table,
            "NFTA_CHAIN_NAME": chain,
            "NFTA_CHAIN_HOOK": {
                "attrs": [("NFTA_HOOK_HOOKNUM", hook), ("NFTA_HOOK_PRIORITY", priority)]
            },
            "NFTA_CHAIN_TYPE": "filter",
        }
        messages.append(_message(nft_chain_msg, NFT_MSG_NEWCHAIN, attrs))
    rules = [("preraw", guard_rule(guard, address)) for address in guard.addresses]
    rules += [("postmangle", save_mark_rule(guard.mark)), ("premangle", restore_mark_rule())]
    for chain, expressions in rules:
        attrs = {
            "NFTA_RULE_TABLE": table,
            "NFTA_RULE_CHAIN": chain,
            "NFTA_RULE_EXPRESSIONS": expressions,
        }
        messages.append(_message(nft_rule_msg, NFT_MSG_NEWRULE, attrs, NLM_F_CREATE | NLM_F_APPEND))
    return messages


def guard_rule(guard: GuardTable, address: IPAddress) -> list[Attrs]:
    """iifname != "IFNAME" ip daddr ADDRESS fib saddr type != local drop"""
    return [
        _expr("meta", dreg=NFT_REG_1, key=NFT_META_IIFNAME),  # meta load iifname => reg 1
        _cmp(NFT_CMP_NEQ, guard.ifname.encode().ljust(IFNAMSIZ, b"\0")),
        _expr(  # payload load 4b @ network header + 16 => reg 1 (16b @ + 24 for IPv6)
            "payload",
            dreg=NFT_REG_1,
            base=NFT_PAYLOAD_NETWORK_HEADER,
            offset=DADDR_OFFSET[guard.family],
            len=len(address.packed),
        ),
        _cmp(NFT_CMP_EQ, address.packed),
        _expr("fib", dreg=NFT_REG_1, result=_FIB_RESULT_ADDRTYPE, flags=NFTA_FIB_F_SADDR),
        _cmp(NFT_CMP_NEQ, struct.pack("=I", RTN_LOCAL)),  # host byte order, as nft stores it
        _expr("immediate", dreg=NFT_REG_VERDICT, data=_verdict(NF_DROP)),
    ]


def save_mark_rule(mark: int) -> list[Attrs]:
    """meta l4proto udp mark MARK ct mark set mark"""
    return [
        _expr("meta", dreg=NFT_REG_1, key=NFT_META_L4PROTO),
        _cmp(NFT_CMP_EQ, bytes([IPPROTO_UDP])),
        _expr("meta", dreg=NFT_REG_1, key=NFT_META_MARK),
        _cmp(NFT_CMP_EQ, struct.pack("=I", mark)),
        _expr("meta", dreg=NFT_REG_1, key=NFT_META_MARK),
        _expr("ct", sreg=NFT_REG_1, key=NFT_CT_MARK),  # ct set mark with reg 1
    ]


def restore_mark_rule() -> list[Attrs]:
    """meta l4proto udp meta mark set ct mark"""
    return [
        _expr("meta", dreg=NFT_REG_1, key=NFT_META_L4PROTO),
        _cmp(NFT_CMP_EQ, bytes([IPPROTO_UDP])),
        _expr("ct", dreg=NFT_REG_1, key=NFT_CT_MARK),  # ct load mark => reg 1
        _expr("meta", sreg=NFT_REG_1, key=NFT_META_MARK),  # meta set mark with reg 1
    ]


# pyroute2 declares NFTA_FIB_RESULT as a bit set whose bit i is its i-th name, while the kernel
# reads a plain number: this set encodes as 3, NFT_FIB_RESULT_ADDRTYPE.
_FIB_RESULT_ADDRTYPE = frozenset({"NFT_FIB_RESULT_UNSPEC", "NFT_FIB_RESULT_OIF"})


def _expr(name: str, **attrs: Any) -> Attrs:
    data = [(f"NFTA_{name.upper()}_{key.upper()}", value) for key, value in attrs.items()]
    return {"attrs": [("NFTA_EXPR_NAME", name), ("NFTA_EXPR_DATA", {"attrs": data})]}


def _cmp(op: int, data: bytes) -> Attrs:
    return _expr("cmp", sreg=NFT_REG_1, op=op, data={"attrs": [("NFTA_DATA_VALUE", data)]})


def _verdict(code: int) -> Attrs:
    return {"attrs": [("NFTA_DATA_VERDICT", {"attrs": [("NFTA_VERDICT_CODE", code)]})]}


def _message(
    cls: type[nfgen_msg], command: int, attrs: Attrs, flags: int = NLM_F_CREATE
) -> nfgen_msg:
    message = cls()
    message["attrs"] = list(attrs.items())
    message["header"]["type"] = (NFNL_SUBSYS_NFTABLES << 8) | command
    message["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
    return message


def _batch(family: int, messages: list[nfgen_msg]) -> None:
    """Send `messages` between a batch begin and end; raise the first error the kernel reports."""
    begin, end = nfgen_msg(), nfgen_msg()
    for control, kind in ((begin, NFNL_MSG_BATCH_BEGIN), (end, NFNL_MSG_BATCH_END)):
        control["res_id"] = NFNL_SUBSYS_NFTABLES
        control["header"]["type"] = kind
        control["header"]["flags"] = NLM_F_REQUEST
    for message in messages:
        message["nfgen_family"] = family
    with NFTSocket(nfgen_family=family) as nft:
        nft.nlm_request_batch([begin, *messages, end])

"""Who may call which method: a policy over the peer credentials of each connection.

Only the daemon holds BPF privileges; this is what decides what callers may
ask of it. Root (uid 0) may call everything. Anyone else gets exactly what a
rule grants, and nothing by default. A rule names principals (uids, user
names, groups) and method patterns (``fnmatch``: ``program.*``, ``*``), and
``scope = "own"`` limits mutations of existing programs and links to those
the caller created (the uid that loaded or attached them). A rule's bounds
(``program_types``, ``netns``, ``interfaces``, ``min_priority``,
``as_caller``, ``program_metadata``) limit what its loads and attaches reach: see
`bpfman.authz.grants`.

    [[authorization.rules]]          # the default policy
    groups = ["bpfman"]
    methods = ["program.list", "program.get", "link.list", "link.get", ...]

    [[authorization.rules]]
    groups = ["bpfman-admin"]
    methods = ["*"]
    program_types = ["*"]
    netns = ["*"]
    as_caller = false

Groups that do not exist on the host match no one. Every denial is logged
(logger ``bpfman.audit``) with the peer's uid, pid and the method.
"""

from __future__ import annotations

import fnmatch
import grp
import logging
import pwd
from typing import Any

import attrs

from bpfman.authz.grants import Bounds
from bpfman.model.caller import Caller
from bpfman.model.errors import PermissionDenied
from bpfman.rpc.methods import Method

audit = logging.getLogger("bpfman.audit")

READ_ONLY_METHODS = [
    "program.list", "program.get", "link.list", "link.get", "dispatcher.list",
    "plugin.list", "daemon.info", "rpc.discover", "map.list", "map.get", "map.dump",
    "image.list", "events.subscribe",
]


@attrs.frozen
class Rule:
    methods: list[str]
    uids: list[int] = attrs.field(factory=list)
    users: list[str] = attrs.field(factory=list)
    groups: list[str] = attrs.field(factory=list)
    scope: str = attrs.field(default="any", validator=attrs.validators.in_({"any", "own"}))
    # What loads and attaches under this rule may reach: see bpfman.authz.grants.
    program_types: list[str] | None = None
    netns: list[str] = attrs.field(factory=list)
    interfaces: list[str] = attrs.field(factory=list)
    min_priority: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    as_caller: bool = True
    program_metadata: dict[str, str] = attrs.field(factory=dict)

    def bounds(self) -> Bounds:
        return Bounds(
            program_types=None if self.program_types is None else tuple(self.program_types),
            netns=tuple(self.netns), interfaces=tuple(self.interfaces),
            min_priority=self.min_priority, as_caller=self.as_caller,
            program_metadata=tuple(sorted(self.program_metadata.items())),
        )


def _default_rules() -> list[Rule]:
    return [
        Rule(groups=["bpfman"], methods=list(READ_ONLY_METHODS)),
        # Administrators are root-equivalent on purpose: every type, target
        # and process.
        Rule(groups=["bpfman-admin"], methods=["*"], program_types=["*"], netns=["*"],
             as_caller=False),
    ]


@attrs.frozen
class AuthorizationConfig:
    rules: list[Rule] = attrs.field(factory=_default_rules)


@attrs.frozen
class Decision:
    allowed: bool
    own_only: bool = False
    grants: tuple[Bounds, ...] | None = None


class Policy:
    def __init__(self, config: AuthorizationConfig) -> None:
        self.rules = config.rules
        # Names resolved once at start-up; a missing user or group matches no one.
        self._uids = [{*r.uids, *(_uid(u) for u in r.users)} - {None} for r in self.rules]
        self._gids = [{_gid(g) for g in r.groups} - {None} for r in self.rules]

    def decide(self, caller: Caller, method: str) -> Decision:
        if caller.uid == 0:
            return Decision(True)
        caller_gids = {caller.gid, *caller.groups}
        granted_any = granted_own = False
        grants = []
        for rule, uids, gids in zip(self.rules, self._uids, self._gids, strict=True):
            if caller.uid not in uids and not (caller_gids & gids):
                continue
            if any(fnmatch.fnmatchcase(method, pattern) for pattern in rule.methods):
                grants.append(rule.bounds())
                if rule.scope == "any":
                    granted_any = True
                else:
                    granted_own = True
        if granted_any:
            return Decision(True, grants=tuple(grants))
        return Decision(granted_own, own_only=granted_own, grants=tuple(grants))

    def guard(self, method: Method) -> Method:
        """`method` with its handler checking this policy first."""
        inner = method.handler

        async def handler(caller: Caller, params: Any) -> Any:
            decision = self.decide(caller, method.name)
            if not decision.allowed:
                audit.warning("denied %s to uid=%d pid=%d", method.name, caller.uid, caller.pid)
                raise PermissionDenied(
                    f"uid {caller.uid} may not call {method.name}", method=method.name
                )
            caller = attrs.evolve(caller, own_only=decision.own_only, grants=decision.grants)
            return await inner(caller, params)

        return attrs.evolve(method, handler=handler)


def _uid(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _gid(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None

"""deploy/compose: the Kafka broker's KRaft settings hang together, and every client reaches
it at an address it advertises.

No container engine runs here, and the apache/kafka image's variables are not validated by
anything else: these checks read compose.yaml (and env.example, config/crisiswatch.yaml)
the way the image's entry point turns ``KAFKA_*`` variables into server properties
(``KAFKA_FOO_BAR`` -> ``foo.bar``).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import pytest

from tests.deploy_support import DEPLOY, ENV_EXAMPLE, compose, env_file, interpolate, load_yaml


def kafka_service() -> dict[str, Any]:
    service: dict[str, Any] = compose()["services"]["kafka"]
    return service


def broker_properties(service: dict[str, Any] | None = None) -> dict[str, str]:
    """The broker's ``KAFKA_*`` variables as server properties (``node.id``, ...), plus
    ``CLUSTER_ID``, interpolated with env.example."""
    service = kafka_service() if service is None else service
    env = env_file(ENV_EXAMPLE)
    props: dict[str, str] = {}
    for key, value in service["environment"].items():
        text = interpolate(str(value), env)
        if key == "CLUSTER_ID":
            props[key] = text
        elif key.startswith("KAFKA_"):
            props[key[len("KAFKA_") :].lower().replace("_", ".")] = text
    return props


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)} (host "" for every interface)."""
    found: dict[str, tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        match = re.fullmatch(r"([A-Za-z0-9_]+)://(\[[^\]]*\]|[^:]*):(\d+)", item)
        assert match, f"not a listener: {item!r}"
        name, host, port = match.groups()
        assert name not in found, f"listener {name} twice"
        found[name] = (host, int(port))
    return found


def coherence_problems(props: dict[str, str], hostnames: set[str]) -> list[str]:
    """What a combined KRaft broker+controller would refuse, or where the other containers
    would not reach it. ``hostnames``: names the broker's container answers to on the
    compose network (its service name, its ``hostname``)."""
    problems: list[str] = []
    roles = set(props.get("process.roles", "").split(","))
    if not roles or not roles <= {"broker", "controller"}:
        return [f"process.roles {props.get('process.roles')!r}"]
    bound = listeners(props["listeners"])
    protocols = dict(
        item.split(":", 1) for item in props["listener.security.protocol.map"].split(",")
    )
    for name in bound:
        if name not in protocols:
            problems.append(f"listener {name} has no security protocol")
    controller_names = props.get("controller.listener.names", "").split(",")
    advertised = listeners(props.get("advertised.listeners", ""))
    if "controller" in roles:
        for name in controller_names:
            if name not in bound:
                problems.append(f"controller listener {name} is not in listeners")
        # every voter: id@host:port; this node is one, on its controller listener's port
        voters = {}
        for voter in props["controller.quorum.voters"].split(","):
            match = re.fullmatch(r"(\d+)@([^:]+):(\d+)", voter.strip())
            if not match:
                problems.append(f"not a voter: {voter!r}")
                continue
            voters[match.group(1)] = (match.group(2), int(match.group(3)))
        me = voters.get(props["node.id"])
        if me is None:
            problems.append(f"node.id {props['node.id']} is not a quorum voter")
        else:
            ports = {bound[n][1] for n in controller_names if n in bound}
            if me[1] not in ports:
                problems.append(f"this voter's port {me[1]} is no controller listener's")
            if me[0] not in hostnames:
                problems.append(f"this voter's host {me[0]!r} does not name the broker")
    if "broker" in roles:
        inter = props.get("inter.broker.listener.name", "PLAINTEXT")
        if inter not in advertised:
            problems.append(f"inter-broker listener {inter} is not advertised")
        for name, (host, port) in advertised.items():
            if name in controller_names:
                problems.append(f"controller listener {name} advertised to clients")
            if name not in bound:
                problems.append(f"advertised listener {name} is not in listeners")
            elif bound[name][1] != port:
                problems.append(f"{name} advertised on {port}, bound on {bound[name][1]}")
            if host not in hostnames:
                problems.append(f"{name} advertises {host!r}: other containers cannot reach it")
    return problems


def kraft_cluster_id_problem(value: str) -> str | None:
    """Kafka's ``Uuid.fromString``: 16 bytes in URL-safe base64 without padding."""
    try:
        raw = base64.urlsafe_b64decode(value + "==")
    except (binascii.Error, ValueError):
        return f"cluster id {value!r} is not base64url"
    if len(value) != 22 or len(raw) != 16:
        return f"cluster id {value!r} is not 16 bytes"
    return None


def client_addresses() -> dict[str, str]:
    """Where each Kafka client of the compose file connects (``host:port``)."""
    data = compose()
    services = data["services"]
    env = env_file(ENV_EXAMPLE)
    found = {}
    config = load_yaml(DEPLOY / "config" / "crisiswatch.yaml")
    found["config/crisiswatch.yaml bus.bootstrap_servers"] = config["bus"]["bootstrap_servers"]
    for name, svc in services.items():
        variable = svc.get("environment", {}).get("CRISISWATCH_BUS__BOOTSTRAP_SERVERS")
        if variable is not None:
            found[f"{name} CRISISWATCH_BUS__BOOTSTRAP_SERVERS"] = interpolate(variable, env)
    for arg in services["kafka-exporter"]["command"]:
        if arg.startswith("--kafka.server="):
            found["kafka-exporter --kafka.server"] = arg.split("=", 1)[1]
    return found


def test_the_coherence_check_can_fail() -> None:
    props = broker_properties()
    hosts = {"kafka"}
    assert coherence_problems(props, hosts) == []
    assert coherence_problems(
        {**props, "advertised.listeners": "PLAINTEXT://localhost:9092"}, hosts
    )
    assert coherence_problems({**props, "controller.quorum.voters": "1@kafka:9092"}, hosts)
    assert coherence_problems({**props, "controller.quorum.voters": "2@kafka:9093"}, hosts)
    assert coherence_problems(
        {**props, "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT"}, hosts
    )
    assert coherence_problems(
        {**props, "advertised.listeners": "PLAINTEXT://kafka:9092,CONTROLLER://kafka:9093"}, hosts
    )
    assert kraft_cluster_id_problem("Y1Xp2AydQBibEhXEHAXI-Q") is None
    assert kraft_cluster_id_problem("not-a-uuid") is not None


def test_the_kraft_broker_is_coherent_and_reachable() -> None:
    service = kafka_service()
    hostnames = {"kafka", service.get("hostname", "kafka")}
    assert coherence_problems(broker_properties(service), hostnames) == []


@pytest.mark.parametrize("source", ["default", "env.example"])
def test_the_cluster_id_is_a_kraft_uuid(source: str) -> None:
    raw = kafka_service()["environment"]["CLUSTER_ID"]
    env = env_file(ENV_EXAMPLE) if source == "env.example" else {}
    problem = kraft_cluster_id_problem(interpolate(str(raw), env))
    assert problem is None, problem


def test_every_client_connects_to_an_advertised_listener() -> None:
    props = broker_properties()
    advertised = {f"{h}:{p}" for h, p in listeners(props["advertised.listeners"]).values()}
    addresses = client_addresses()
    assert len(addresses) >= 3, addresses  # the config, the roles' variable, the exporter
    for where, servers in addresses.items():
        for server in servers.split(","):
            assert server.strip() in advertised, f"{where}: {server} (advertised: {advertised})"
    # the healthcheck asks the broker on a port it listens on
    test = " ".join(kafka_service()["healthcheck"]["test"])
    (port,) = re.findall(r"--bootstrap-server localhost:(\d+)", test)
    assert int(port) in {p for _, p in listeners(props["listeners"]).values()}


def test_one_broker_holds_every_replica_and_keeps_its_data() -> None:
    props = broker_properties()
    voters = props["controller.quorum.voters"].split(",")
    brokers = len(voters)  # the combined nodes: each is a broker too
    for key, value in props.items():
        if key.endswith("replication.factor") or key.endswith("min.isr"):
            assert int(value) <= brokers, f"{key}={value} with {brokers} broker(s)"
    config = load_yaml(DEPLOY / "config" / "crisiswatch.yaml")
    assert config["bus"]["replication_factor"] <= brokers
    # topics are made by crisiswatch, with its partitions and replication factor
    assert props.get("auto.create.topics.enable") == "false"
    # the log directory is a volume: a restart keeps topics and offsets
    mounts = dict(v.rsplit(":", 1)[::-1] for v in kafka_service()["volumes"])
    assert props["log.dirs"] in mounts, f"log.dirs {props['log.dirs']} is not a volume"
    assert mounts[props["log.dirs"]] in compose()["volumes"]

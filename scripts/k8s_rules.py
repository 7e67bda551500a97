#!/usr/bin/env python3
"""Cross-object checks of one rendered Kubernetes overlay (scripts/k8s-check).

Schema validation proves each object is well-formed on its own; these rules
prove the objects agree with each other and with the rest of the repository:
the StatefulSet's size and PARLEDGER_FOUNDERS, the PodDisruptionBudget and a
Raft quorum, probe paths and the API's routes, ports between the entrypoint,
the containers, the Services and the Dockerfile, volumes and their mounts.

    k8s_rules.py --repo . --overlay three --rendered three.yaml --replicas 3 --founders 3

Prints one PASS or FAIL line per rule (a FAIL says what disagrees) and exits
1 if any rule failed, 2 if the input cannot be read. Needs PyYAML only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import yaml

# The paths the probes and the scrape annotation must use, by role.
LIVENESS_PATH = "/livez"
READINESS_PATH = "/readyz"
METRICS_PATH = "/metrics"


class Unreadable(Exception):
    """The rendered manifests or a repository file are not what the rules expect."""


@dataclass
class Report:
    overlay: str
    failures: int = 0
    lines: list[str] = field(default_factory=list)

    def check(self, rule: str, ok: bool, what: str, why: str = "") -> None:
        """One rule's verdict: `what` it checked; `why` it failed."""
        if ok:
            print(f"PASS [{self.overlay}] {rule}: {what}")
        else:
            self.failures += 1
            print(f"FAIL [{self.overlay}] {rule}: {what}\n     -> {why}")


def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise Unreadable(f"cannot read {path}: {e}") from e


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o.get("kind") == kind]
    if len(found) != 1:
        raise Unreadable(f"expected exactly one {kind} in the rendered overlay, found {len(found)}")
    return found[0]


def name_of(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """A non-empty label selector (matchLabels) selects these labels."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def entrypoint_facts(text: str) -> dict[str, str]:
    """The constants and defaults the entrypoint passes to `parledger serve`."""
    patterns = {
        "api_port": r"^API_PORT=(\d+)$",
        "cluster_port": r"^CLUSTER_PORT=(\d+)$",
        "data_dir": r"^DATA_DIR=\$\{PARLEDGER_DATA_DIR:-([^}]+)\}$",
        "cluster_tls_dir": r"^CLUSTER_TLS_DIR=\$\{PARLEDGER_CLUSTER_TLS_DIR:-([^}]+)\}$",
        "jwt_key_file": r"^JWT_KEY_FILE=\$\{PARLEDGER_JWT_KEY_FILE:-([^}]+)\}$",
        "init_password_file": r"^INIT_PASSWORD_FILE=\$\{PARLEDGER_INIT_PASSWORD_FILE:-([^}]+)\}$",
    }
    facts = {}
    for key, pattern in patterns.items():
        m = re.search(pattern, text, re.MULTILINE)
        if not m:
            raise Unreadable(f"the entrypoint has no line matching {pattern}")
        facts[key] = m.group(1)
    # The flags must use the constants, or the constants prove nothing.
    for flag in ('--listen "0.0.0.0:$API_PORT"', '--cluster-listen "0.0.0.0:$CLUSTER_PORT"', '--data-dir "$DATA_DIR"'):
        if flag not in text:
            raise Unreadable(f"the entrypoint does not pass {flag}")
    return facts


def dockerfile_facts(text: str) -> dict[str, Any]:
    user = re.search(r"^USER (\d+):(\d+)$", text, re.MULTILINE)
    expose = re.search(r"^EXPOSE ([\d ]+)$", text, re.MULTILINE)
    volume = re.search(r'^VOLUME \["([^"]+)"\]$', text, re.MULTILINE)
    if not (user and expose and volume):
        raise Unreadable("the Dockerfile needs `USER UID:GID`, `EXPOSE PORTS` and `VOLUME [\"DIR\"]` lines")
    return {
        "uid": int(user.group(1)),
        "gid": int(user.group(2)),
        "expose": sorted(int(p) for p in expose.group(1).split()),
        "volume": volume.group(1),
    }


def api_routes(repo: str) -> tuple[set[str], set[str]]:
    """The paths of the OpenAPI document, and the GET routes of server/src/api/ops.rs."""
    try:
        doc = json.loads(read(os.path.join(repo, "openapi", "openapi.json")))
    except json.JSONDecodeError as e:
        raise Unreadable(f"openapi/openapi.json: {e}") from e
    ops = read(os.path.join(repo, "server", "src", "api", "ops.rs"))
    return set(doc.get("paths", {})), set(re.findall(r'#\[get\("([^"]+)"\)\]', ops))


def container_env(container: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, str]:
    """The container's literal environment: ConfigMaps from envFrom, then env (which wins)."""
    env: dict[str, str] = {}
    config_maps = {name_of(o): o for o in objects if o.get("kind") == "ConfigMap"}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            cm = config_maps.get(ref.get("name", ""))
            if cm is None:
                raise Unreadable(f"envFrom names the ConfigMap {ref.get('name')}, which is not rendered")
            env.update({k: str(v) for k, v in (cm.get("data") or {}).items()})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
    return env


def quorum_kept(n: int, pdb_spec: dict[str, Any]) -> tuple[bool, str]:
    """Whether the budget leaves a Raft majority of n nodes running."""
    majority = n // 2 + 1

    def count(value: Any, round_up: bool) -> int:
        if isinstance(value, str) and value.endswith("%"):
            pct = int(value[:-1])
            # Kubernetes rounds both maxUnavailable and minAvailable up.
            return -(-n * pct // 100) if round_up else n * pct // 100
        return int(value)

    if "maxUnavailable" in pdb_spec:
        down = count(pdb_spec["maxUnavailable"], True)
        left = n - down
        return left >= majority, f"{n} nodes, maxUnavailable {pdb_spec['maxUnavailable']} leaves {left}, majority {majority}"
    if "minAvailable" in pdb_spec:
        left = count(pdb_spec["minAvailable"], True)
        return left >= majority, f"{n} nodes, minAvailable {pdb_spec['minAvailable']} keeps {left}, majority {majority}"
    return False, f"{n} nodes: the budget sets neither maxUnavailable nor minAvailable"


def run(args: argparse.Namespace) -> int:
    text = read(args.rendered)
    try:
        objects = [o for o in yaml.safe_load_all(text) if o]
    except yaml.YAMLError as e:
        raise Unreadable(f"{args.rendered}: {e}") from e
    entry = entrypoint_facts(read(os.path.join(args.repo, "deploy", "kubernetes", "entrypoint.sh")))
    docker = dockerfile_facts(read(os.path.join(args.repo, "deploy", "Dockerfile")))
    openapi_paths, ops_routes = api_routes(args.repo)

    sts = one(objects, "StatefulSet")
    pdb = one(objects, "PodDisruptionBudget")
    services = {name_of(o): o for o in objects if o.get("kind") == "Service"}
    spec = sts.get("spec", {})
    template = spec.get("template", {})
    pod = template.get("spec", {})
    pod_labels = template.get("metadata", {}).get("labels", {}) or {}
    containers = pod.get("containers", [])
    main = next((c for c in containers if c.get("name") == "parledger"), None)
    if main is None:
        raise Unreadable("the StatefulSet has no container named parledger")
    env = container_env(main, objects)
    ports = {p.get("name"): p.get("containerPort") for p in main.get("ports", [])}
    api_port, cluster_port = int(entry["api_port"]), int(entry["cluster_port"])
    r = Report(args.overlay)

    # --- size: replicas and founders -------------------------------------
    replicas = spec.get("replicas")
    founders_text = env.get("PARLEDGER_FOUNDERS", "")
    founders = int(founders_text) if founders_text.isdigit() else None
    r.check(
        "founders",
        replicas == args.replicas and founders == args.founders,
        f"StatefulSet replicas {replicas} (expected {args.replicas}), "
        f"PARLEDGER_FOUNDERS {founders_text!r} (expected {args.founders})",
        "the overlay must set both (a founder started with another founder count "
        "would be given another peer set)",
    )
    odd = (
        isinstance(replicas, int)
        and founders is not None
        and founders % 2 == 1
        and replicas % 2 == 1
        and founders <= replicas
    )
    r.check(
        "odd-sizes",
        odd,
        f"founders {founders}, replicas {replicas}: both odd, founders <= replicas",
        "an even Raft cluster tolerates no more failures than the odd one below it, "
        "and the pods above the founders join (there cannot be fewer pods than founders)",
    )

    founded = env.get("PARLEDGER_FOUNDED")
    r.check(
        "founded-flag",
        founded in ("true", "false"),
        f"PARLEDGER_FOUNDED is {founded!r}",
        "the entrypoint accepts only true or false (true: every pod with an empty volume joins)",
    )

    # --- the disruption budget -------------------------------------------
    pdb_spec = pdb.get("spec", {})
    pdb_selector = (pdb_spec.get("selector") or {}).get("matchLabels") or {}
    sts_selector = (spec.get("selector") or {}).get("matchLabels") or {}
    r.check(
        "pdb-selects-pods",
        matches(pdb_selector, pod_labels) and matches(sts_selector, pod_labels),
        f"PodDisruptionBudget {name_of(pdb)} selector {pdb_selector} selects the pod labels "
        f"(the StatefulSet's selector {sts_selector} too)",
        f"pod labels are {pod_labels}",
    )
    verdicts = [quorum_kept(n, pdb_spec) for n in sorted({founders or 0, replicas or 0}) if n > 0]
    r.check(
        "pdb-quorum",
        bool(verdicts) and all(ok for ok, _ in verdicts),
        "; ".join(why for _, why in verdicts) or "no cluster size to check",
        "a drain could take down a majority: the cluster would lose its leader and stop taking writes",
    )

    # --- probes and metrics -----------------------------------------------
    def probe_path(probe: str) -> tuple[str | None, Any]:
        get = (main.get(probe) or {}).get("httpGet") or {}
        return get.get("path"), get.get("port")

    expected = {"livenessProbe": LIVENESS_PATH, "readinessProbe": READINESS_PATH, "startupProbe": LIVENESS_PATH}
    for probe, want in expected.items():
        path, port = probe_path(probe)
        resolved = ports.get(port) if isinstance(port, str) else port
        r.check(
            f"probe-{probe}",
            path == want and resolved == api_port,
            f"{probe} GET {path} on port {port} (= {resolved}); expected {want} on the API port {api_port}",
            "liveness must only ask whether the process answers (/livez), readiness whether the "
            "node has a leader and is caught up (/readyz), both on the API port",
        )
    annotations = template.get("metadata", {}).get("annotations", {}) or {}
    scrape_ok = (
        annotations.get("prometheus.io/scrape") == "true"
        and annotations.get("prometheus.io/port") == str(api_port)
        and annotations.get("prometheus.io/path") == METRICS_PATH
    )
    r.check(
        "scrape-annotations",
        scrape_ok,
        f"pod annotations prometheus.io/scrape={annotations.get('prometheus.io/scrape')!r}, "
        f"port={annotations.get('prometheus.io/port')!r}, path={annotations.get('prometheus.io/path')!r}",
        f"expected scrape 'true', port '{api_port}', path '{METRICS_PATH}'",
    )
    used_paths = sorted(
        {p for p in (probe_path(x)[0] for x in expected) if p}
        | ({annotations["prometheus.io/path"]} if "prometheus.io/path" in annotations else set())
    )
    missing_doc = [p for p in used_paths if p not in openapi_paths]
    missing_route = [p for p in used_paths if p not in ops_routes]
    r.check(
        "paths-in-api",
        not missing_doc and not missing_route,
        f"{', '.join(used_paths)} are paths of openapi/openapi.json and GET routes of server/src/api/ops.rs",
        f"not in the OpenAPI document: {missing_doc or 'none'}; not routed in ops.rs: {missing_route or 'none'}",
    )

    # --- ports ---------------------------------------------------------------
    r.check(
        "container-ports",
        ports.get("http") == api_port and ports.get("raft") == cluster_port,
        f"container ports http={ports.get('http')} raft={ports.get('raft')}; the entrypoint listens on "
        f"API {api_port} and cluster {cluster_port}",
        "the container must expose what the entrypoint passes to --listen and --cluster-listen",
    )
    r.check(
        "dockerfile-expose",
        docker["expose"] == sorted([api_port, cluster_port]),
        f"deploy/Dockerfile EXPOSE {docker['expose']}, entrypoint ports {[api_port, cluster_port]}",
        "the image documents other ports than the node listens on",
    )
    for svc_name, svc in sorted(services.items()):
        svc_spec = svc.get("spec", {})
        selector = svc_spec.get("selector") or {}
        bad = []
        for p in svc_spec.get("ports", []):
            target = p.get("targetPort", p.get("port"))
            resolved = ports.get(target) if isinstance(target, str) else target
            if resolved not in (api_port, cluster_port):
                bad.append(f"port {p.get('name')} targets {target!r}, which is no container port")
            elif p.get("port") != resolved:
                bad.append(f"port {p.get('name')} is {p.get('port')} but targets {resolved}")
        if not matches(selector, pod_labels):
            bad.append(f"selector {selector} does not select the pod labels {pod_labels}")
        r.check(
            f"service-{svc_name}",
            not bad and bool(svc_spec.get("ports")),
            f"Service {svc_name} selects the pods and its ports "
            f"{[(p.get('name'), p.get('port'), p.get('targetPort')) for p in svc_spec.get('ports', [])]} "
            "reach container ports",
            "; ".join(bad) or "it has no ports",
        )

    # --- the headless Service -------------------------------------------------
    service_name = spec.get("serviceName")
    headless = services.get(service_name or "")
    headless_ok = (
        headless is not None
        and headless["spec"].get("clusterIP") == "None"
        and headless["spec"].get("publishNotReadyAddresses") is True
        and any(
            (ports.get(p.get("targetPort")) if isinstance(p.get("targetPort"), str) else p.get("targetPort"))
            == cluster_port
            for p in headless["spec"].get("ports", [])
        )
    )
    r.check(
        "headless-service",
        headless_ok and env.get("PARLEDGER_PEER_SERVICE") == service_name,
        f"serviceName {service_name!r} is a rendered headless Service (clusterIP None, publishNotReadyAddresses, "
        f"the raft port {cluster_port}); PARLEDGER_PEER_SERVICE is {env.get('PARLEDGER_PEER_SERVICE')!r}",
        "the pods' DNS names come from the headless Service: the entrypoint builds peer addresses from "
        "PARLEDGER_PEER_SERVICE, and founders must resolve each other before any is ready",
    )
    client = [
        n
        for n, s in services.items()
        if s["spec"].get("clusterIP") != "None"
        and any(
            (ports.get(p.get("targetPort")) if isinstance(p.get("targetPort"), str) else p.get("targetPort"))
            == api_port
            for p in s["spec"].get("ports", [])
        )
    ]
    r.check(
        "client-service",
        len(client) == 1,
        f"one client Service on the API port {api_port}: {client}",
        "expected exactly one non-headless Service for the API",
    )

    # --- volumes and mounts ---------------------------------------------------------
    volumes = {v.get("name"): v for v in pod.get("volumes", [])}
    claims = {c.get("metadata", {}).get("name") for c in spec.get("volumeClaimTemplates", [])}
    mounts = [m for c in containers + pod.get("initContainers", []) for m in c.get("volumeMounts", [])]
    mounted = {m.get("name") for m in mounts}
    unmounted = sorted(n for n in volumes if n not in mounted)
    unknown = sorted(n for n in mounted if n not in volumes and n not in claims)
    r.check(
        "volumes-mounted",
        not unmounted and not unknown,
        f"volumes {sorted(volumes)} and claims {sorted(claims)} are each mounted, and every mount names one",
        f"not mounted: {unmounted or 'none'}; mounts of nothing: {unknown or 'none'}",
    )
    data_dir = env.get("PARLEDGER_DATA_DIR", entry["data_dir"])
    main_mounts = {m.get("name"): m for m in main.get("volumeMounts", [])}
    data_mounts = [m for n, m in main_mounts.items() if n in claims]
    r.check(
        "data-dir",
        len(data_mounts) == 1 and data_mounts[0].get("mountPath") == data_dir == docker["volume"],
        f"the claim is mounted at {[m.get('mountPath') for m in data_mounts]}, the entrypoint's data directory "
        f"is {data_dir}, the Dockerfile's VOLUME {docker['volume']}",
        "the node would write its ledger outside the persistent volume",
    )
    secret_mounts = {
        m.get("mountPath"): volumes[n]["secret"].get("secretName")
        for n, m in main_mounts.items()
        if n in volumes and "secret" in volumes[n]
    }
    files = {
        "cluster TLS directory": env.get("PARLEDGER_CLUSTER_TLS_DIR", entry["cluster_tls_dir"]),
        "JWT key": os.path.dirname(env.get("PARLEDGER_JWT_KEY_FILE", entry["jwt_key_file"])),
        "founding password": os.path.dirname(env.get("PARLEDGER_INIT_PASSWORD_FILE", entry["init_password_file"])),
    }
    not_on_secret = {what: d for what, d in files.items() if d not in secret_mounts}
    r.check(
        "secret-files",
        not not_on_secret,
        "the files the entrypoint reads are in mounted Secrets: "
        + ", ".join(f"{what} {d} ({secret_mounts.get(d, '-')})" for what, d in files.items()),
        f"not a Secret's mount path: {not_on_secret}",
    )
    from_env = [
        v.get("name")
        for c in containers
        for v in c.get("env", [])
        if (v.get("valueFrom") or {}).get("secretKeyRef")
    ] + [s["secretRef"].get("name") for c in containers for s in c.get("envFrom", []) if "secretRef" in s]
    rendered_secrets = [name_of(o) for o in objects if o.get("kind") == "Secret"]
    r.check(
        "secrets-as-files",
        not from_env and not rendered_secrets,
        "no Secret reaches a container through its environment, and no Secret is rendered (keys are created "
        "out of band, never committed)",
        f"secrets in env: {from_env or 'none'}; Secret objects: {rendered_secrets or 'none'}",
    )

    # --- updates and security -----------------------------------------------------
    strategy = spec.get("updateStrategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    r.check(
        "rolling-update",
        strategy.get("type") == "RollingUpdate"
        and rolling.get("maxUnavailable", 1) == 1
        and spec.get("podManagementPolicy") == "Parallel"
        and (spec.get("ordinals") or {}).get("start", 0) == 0,
        f"updateStrategy {strategy}, podManagementPolicy {spec.get('podManagementPolicy')}, "
        f"ordinals {spec.get('ordinals', 'from 0')}",
        "updates must roll one pod at a time (a majority keeps running), founders must start in parallel, "
        "and ordinals start at 0 (the entrypoint makes ordinal N node N+1)",
    )
    pod_sc = pod.get("securityContext") or {}
    sc = main.get("securityContext") or {}
    writable = sorted(m.get("mountPath") for m in main.get("volumeMounts", []) if not m.get("readOnly"))
    problems = []
    if not (pod_sc.get("runAsNonRoot") or sc.get("runAsNonRoot")):
        problems.append("runAsNonRoot is not set")
    if pod_sc.get("runAsUser") != docker["uid"] or pod_sc.get("fsGroup") != docker["gid"]:
        problems.append(
            f"runAsUser {pod_sc.get('runAsUser')} / fsGroup {pod_sc.get('fsGroup')} are not the image's "
            f"{docker['uid']}:{docker['gid']}"
        )
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("the root filesystem is writable")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("privilege escalation is allowed")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        problems.append("capabilities are not all dropped")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        problems.append(f"seccompProfile is {seccomp}")
    if writable != sorted([data_dir, "/tmp"]):
        problems.append(f"writable mounts are {writable}, not only the data directory and /tmp")
    r.check(
        "security-context",
        not problems,
        f"non-root as {docker['uid']}:{docker['gid']}, read-only root, no escalation, no capabilities, "
        f"RuntimeDefault seccomp, writable only {writable}",
        "; ".join(problems),
    )
    if args.restore:
        restore_rules(r, args.restore, sts, docker, data_dir)
    return 1 if r.failures else 0


def restore_rules(r: Report, path: str, sts: dict[str, Any], docker: dict[str, Any], data_dir: str) -> None:
    """The restore helper (deploy/kubernetes/restore) makes the claim the
    StatefulSet would make for the pod it names, so that the StatefulSet
    adopts it, and runs as the node's user on the node's data directory."""
    try:
        objects = [o for o in yaml.safe_load_all(read(path)) if o]
    except yaml.YAMLError as e:
        raise Unreadable(f"{path}: {e}") from e
    claim = one(objects, "PersistentVolumeClaim")
    pod = one(objects, "Pod")
    sts_name = name_of(sts)
    templates = sts.get("spec", {}).get("volumeClaimTemplates") or []
    template = templates[0] if len(templates) == 1 else {}
    tname = name_of(template)
    m = re.fullmatch(rf"{re.escape(tname)}-{re.escape(sts_name)}-(\d+)", name_of(claim))
    problems = []
    if not m:
        problems.append(f"claim {name_of(claim)!r} is not {tname}-{sts_name}-ORDINAL")
    if claim.get("spec") != template.get("spec"):
        problems.append(f"claim spec {claim.get('spec')} differs from the template's {template.get('spec')}")
    tlabels = template.get("metadata", {}).get("labels") or {}
    if (claim.get("metadata", {}).get("labels") or {}) != tlabels:
        problems.append("claim labels differ from the template's")
    r.check(
        "restore-claim",
        not problems,
        f"{path}: claim {name_of(claim)} matches the StatefulSet's volumeClaimTemplates",
        "; ".join(problems),
    )
    spec = pod.get("spec", {})
    sc = spec.get("securityContext") or {}
    claims = {
        v.get("name"): (v.get("persistentVolumeClaim") or {}).get("claimName") for v in spec.get("volumes", [])
    }
    mounts = {
        m.get("name"): m.get("mountPath") for c in spec.get("containers", []) for m in c.get("volumeMounts", [])
    }
    data_volume = next((n for n, c in claims.items() if c == name_of(claim)), None)
    problems = []
    if (str(sc.get("runAsUser")), str(sc.get("fsGroup"))) != (str(docker["uid"]), str(docker["gid"])):
        problems.append(f"runs as {sc.get('runAsUser')}/{sc.get('fsGroup')}, not {docker['uid']}/{docker['gid']}")
    if data_volume is None:
        problems.append(f"no volume mounts the claim {name_of(claim)}")
    elif mounts.get(data_volume) != data_dir:
        problems.append(f"the claim is mounted at {mounts.get(data_volume)}, not {data_dir}")
    r.check(
        "restore-pod",
        not problems,
        f"{path}: pod {name_of(pod)} runs as the node's user with the claim at {data_dir}",
        "; ".join(problems),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="the repository's root")
    parser.add_argument("--overlay", required=True, help="the overlay's name, for the report")
    parser.add_argument("--rendered", required=True, help="the overlay rendered by `kubectl kustomize`")
    parser.add_argument("--replicas", type=int, required=True, help="the StatefulSet's expected replicas")
    parser.add_argument("--founders", type=int, required=True, help="the expected PARLEDGER_FOUNDERS")
    parser.add_argument("--restore", help="the restore helper's manifests, checked against this overlay")
    args = parser.parse_args()
    try:
        return run(args)
    except Unreadable as e:
        print(f"FAIL [{args.overlay}] input: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())

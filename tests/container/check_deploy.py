#!/usr/bin/env python3
"""Checks that deploy/ parses and agrees with the node's configuration and the Dockerfile.

Usage: tests/container/check_deploy.py REPO_ROOT CONFIG_OUT
One line per check ("ok: ..." / "FAIL: ..."); exit code = the number of failures. Writes the
ConfigMap's moleculer.config.json to CONFIG_OUT, for the node's own parser to read
(scripts/container-steps.sh). PyYAML (Debian's python3-yaml) reads the YAML.
"""
import json
import os
import re
import sys

import yaml

repo, config_out = sys.argv[1], sys.argv[2]
failures = 0


def check(name, condition, detail=""):
    global failures
    if condition:
        print(f"ok: {name}{': ' + detail if detail else ''}")
    else:
        failures += 1
        print(f"FAIL: {name}{': ' + detail if detail else ''}")


def unknown_keys(config, defaults, where=""):
    """Keys of `config` the repository's moleculer.config.json does not have (a typo would be a
    silently ignored key in the ConfigMap)."""
    found = []
    for key, value in config.items():
        if key not in defaults:
            found.append(where + key)
        elif isinstance(value, dict) and isinstance(defaults[key], dict) and key != "metadata":
            found += unknown_keys(value, defaults[key], f"{where}{key}.")
    return found


def merged(defaults, config):
    out = dict(defaults)
    for key, value in config.items():
        out[key] = merged(defaults[key], value) if isinstance(value, dict) and isinstance(
            defaults.get(key), dict) else value
    return out


# --- Kubernetes -------------------------------------------------------------------------------
kube_dir = os.path.join(repo, "deploy", "kubernetes")
docs = {}
try:
    for name in sorted(os.listdir(kube_dir)):
        if name.endswith(".yaml") and name != "kustomization.yaml":
            with open(os.path.join(kube_dir, name)) as f:
                for doc in yaml.safe_load_all(f):
                    docs[doc["kind"]] = doc
    check("deploy/kubernetes/*.yaml parse", {"Deployment", "Service", "ConfigMap"} <= docs.keys(),
          "kinds " + ", ".join(sorted(docs)))
except Exception as error:  # a parse error is one failed check, and the rest cannot run
    check("deploy/kubernetes/*.yaml parse", False, str(error))
    sys.exit(failures)
with open(os.path.join(kube_dir, "kustomization.yaml")) as f:
    listed = set(yaml.safe_load(f)["resources"])
present = {n for n in os.listdir(kube_dir) if n.endswith(".yaml") and n != "kustomization.yaml"}
check("kustomization.yaml lists every manifest", listed == present, ", ".join(sorted(listed)))

with open(os.path.join(repo, "moleculer.config.json")) as f:
    defaults = json.load(f)
config_text = docs["ConfigMap"]["data"]["moleculer.config.json"]
config = json.loads(config_text)
with open(config_out, "w") as f:
    f.write(config_text)
unknown = unknown_keys(config, defaults)
check("ConfigMap moleculer.config.json: JSON, only keys the node knows", not unknown,
      "unknown: " + ", ".join(unknown) if unknown else f"{len(config)} top-level keys")
effective = merged(defaults, config)
gateway = effective["gateway"]

deployment = docs["Deployment"]
pod = deployment["spec"]["template"]["spec"]
container = pod["containers"][0]
env = {e["name"]: e for e in container.get("env", [])}
mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
config_volume = next(v["name"] for v in pod["volumes"]
                     if v.get("configMap", {}).get("name") == docs["ConfigMap"]["metadata"]["name"])
config_path = env.get("MOLECULER_CONFIG", {}).get("value", "")
check("MOLECULER_CONFIG names the ConfigMap's file as mounted",
      config_path == os.path.join(mounts.get(config_volume, "?"), "moleculer.config.json"),
      config_path)

ports = {p["name"]: p["containerPort"] for p in container["ports"]}
port = int(env["PORT"]["value"]) if "PORT" in env else gateway["port"]
check("containerPort is gateway.port", ports.get("http") == port, f"http {ports.get('http')}, gateway.port {port}")
service_port = docs["Service"]["spec"]["ports"][0]
check("Service targets the container's port",
      service_port["targetPort"] in ports or service_port["targetPort"] == port,
      f"targetPort {service_port['targetPort']}")
labels = deployment["spec"]["template"]["metadata"]["labels"]
selector = docs["Service"]["spec"]["selector"]
check("Service selector matches the pods' labels",
      all(labels.get(k) == v for k, v in selector.items()), str(selector))

for probe, key in (("readinessProbe", "readyPath"), ("livenessProbe", "healthPath")):
    get = container[probe]["httpGet"]
    check(f"{probe} GETs gateway.{key} on the gateway port",
          get["path"] == gateway[key] and (get["port"] == port or ports.get(get["port"]) == port),
          f"{get['path']} port {get['port']}")

pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
pre_stop_s = int(pre_stop[-1]) if pre_stop[0] == "sleep" else 0
grace = pod["terminationGracePeriodSeconds"]
drain_s = gateway["drainTimeout"] / 1000
check("terminationGracePeriodSeconds > preStop sleep + gateway.drainTimeout",
      pre_stop_s > 0 and grace > pre_stop_s + drain_s,
      f"{grace} s > {pre_stop_s} s + {drain_s:g} s")

with open(os.path.join(repo, "Dockerfile")) as f:
    dockerfile = f.read()
image_uid = re.search(r"^USER (\d+):(\d+)", dockerfile, re.M)
security = pod.get("securityContext", {})
check("pod runs as the image's non-root USER",
      security.get("runAsNonRoot") is True and image_uid is not None
      and security.get("runAsUser") == int(image_uid.group(1))
      and security.get("runAsGroup") == int(image_uid.group(2)),
      f"runAsUser {security.get('runAsUser')}, Dockerfile {image_uid.group(0) if image_uid else 'USER missing'}")
csc = container.get("securityContext", {})
check("container: no privilege escalation, read-only root, no capabilities",
      csc.get("allowPrivilegeEscalation") is False and csc.get("readOnlyRootFilesystem") is True
      and csc.get("capabilities", {}).get("drop") == ["ALL"])
resources = container.get("resources", {})
check("container has resource requests and a memory limit",
      "cpu" in resources.get("requests", {}) and "memory" in resources.get("limits", {}),
      json.dumps(resources))
exposed = re.findall(r"^EXPOSE (\d+)", dockerfile, re.M)
check("Dockerfile EXPOSEs gateway.port", str(port) in exposed, f"EXPOSE {' '.join(exposed)}")

# --- Docker Compose ---------------------------------------------------------------------------
with open(os.path.join(repo, "deploy", "docker-compose.yml")) as f:
    compose = yaml.safe_load(f)
services = compose["services"]
check("docker-compose.yml parses: nats, socket, mock-auth, producer",
      {"nats", "socket", "mock-auth", "producer"} <= services.keys(), ", ".join(services))
socket = services["socket"]
build = socket.get("build", {})
check("compose builds the node from the repository's Dockerfile",
      os.path.normpath(os.path.join(repo, "deploy", build.get("context", ""))) == os.path.normpath(repo)
      and build.get("dockerfile") == "Dockerfile")
for name in ("socket", "mock-auth", "producer"):
    transporter = services[name].get("environment", {}).get("TRANSPORTER", "")
    check(f"compose {name}: TRANSPORTER reaches the nats service",
          re.fullmatch(r"nats://nats:4222", transporter) is not None, transporter)
compose_port = int(socket["environment"].get("PORT", gateway["port"]))
published = [str(p) for p in socket.get("ports", [])]
check("compose publishes the node's port", f"{compose_port}:{compose_port}" in published,
      ", ".join(published))
for name in ("mock-auth", "producer"):
    script = services[name]["command"][-1]
    check(f"compose {name} runs an existing examples/ script",
          os.path.isfile(os.path.join(repo, "examples", script)), script)

sys.exit(failures)

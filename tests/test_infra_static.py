"""The infra files validated without a Docker engine: promtool, docker-compose config, JSON schemas, Dockerfile."""

from __future__ import annotations

import fnmatch
import json
import os
import re
from pathlib import Path

import yaml

from arbframe.testing.prometheus_server import run_tool, skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "docker-compose.yml"
ENV_EXAMPLE = INFRA / ".env.example"
DASHBOARD = INFRA / "grafana" / "dashboards" / "arbframe.json"

SERVICES = {
    "postgres", "redis", "adminer", "arbframe-app", "redis-exporter", "postgres-exporter", "prometheus", "grafana",
    "alertmanager",
}


def _clean_env() -> dict[str, str]:
    """The process environment without anything that could fill the compose variables by accident."""
    names = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    return {k: v for k, v in os.environ.items() if k not in names and not k.startswith("COMPOSE_")}


# ------------------------------------------------------------------------------------------------ promtool
def test_promtool_accepts_prometheus_yml_and_its_rule_file() -> None:
    proc = run_tool("promtool", "check", "config", str(INFRA / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout and "1 rule files found" in proc.stdout


def test_promtool_accepts_the_alert_rules_and_their_unit_tests() -> None:
    proc = run_tool("promtool", "check", "rules", str(INFRA / "alerts.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_tool("promtool", "test", "rules", str(INFRA / "alerts_test.yml"), cwd=INFRA)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _alert_rules() -> list[dict]:
    rules = yaml.safe_load((INFRA / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    tests = yaml.safe_load((INFRA / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")}
    names = {rule["alert"] for rule in _alert_rules()}
    assert names - fired == set(), f"alerts without a firing case in infra/alerts_test.yml: {names - fired}"
    # every error-counter rule is tested with a series born at 1 (notation "_xN 1..."), not only a 0 -> 1 step
    born_at_one = " ".join(s["series"] for t in tests for s in t["input_series"] if s["values"].startswith("_"))
    for rule in _alert_rules():
        if "unless" in rule["expr"]:
            metric = re.search(r"unless (\w+)", rule["expr"]).group(1)
            assert metric in born_at_one, f"{rule['alert']}: no first-error series born at 1 for {metric}"


def test_alert_rules_compare_against_the_configured_limits() -> None:
    """No copied thresholds: the money, FX and heartbeat rules read the limit gauges the service exports."""
    exprs = {rule["alert"]: " ".join(rule["expr"].split()) for rule in _alert_rules()}
    assert "arbitrage_max_daily_loss_krw" in exprs["ArbframeDailyLoss"]
    assert "arbitrage_max_daily_loss_krw" in exprs["ArbframeDailyLossLimitReached"]
    assert "arbitrage_max_drawdown_krw" in exprs["ArbframeDrawdown"]
    assert "arbitrage_max_fx_age_seconds" in exprs["ArbframeFxStale"]
    assert "arbitrage_tick_interval_seconds" in exprs["ArbframeHeartbeatStale"]
    assert "arbitrage_tick_interval_seconds" in exprs["ArbframeTickSlow"]
    for name in ("ArbframeDailyLoss", "ArbframeDailyLossLimitReached", "ArbframeDrawdown", "ArbframeFxStale"):
        assert not re.search(r"[<>]=? *-?\d{3,}", exprs[name]), f"{name} compares against a copied number"
    # the rules on error counters also see a series born at a non-zero value
    for name in ("ArbframePluginErrors", "StorageWriteErrors", "ExchangeBanned"):
        assert "unless" in exprs[name] and "offset" in exprs[name], name


def test_prometheus_yml_has_the_seed_jobs_and_interval() -> None:
    config = yaml.safe_load((INFRA / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "15s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "redis-exporter", "postgres-exporter", "arbitrage-metrics", "alertmanager"}

    def targets(job: str) -> list[str]:
        return [t for sc in jobs[job]["static_configs"] for t in sc["targets"]]

    assert targets("prometheus") == ["localhost:9090"]
    assert targets("redis-exporter") == ["redis-exporter:9121"]
    assert targets("postgres-exporter") == ["postgres-exporter:9187"]
    assert targets("arbitrage-metrics") == ["arbframe-app:8000"]
    assert jobs["arbitrage-metrics"].get("metrics_path", "/metrics") == "/metrics"
    assert targets("alertmanager") == ["alertmanager:9093"]
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["alertmanager:9093"]


# ---------------------------------------------------------------------------------------------- alertmanager
def test_amtool_accepts_the_alertmanager_config() -> None:
    proc = run_tool("amtool", "check-config", str(INFRA / "alertmanager.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_alertmanager_routes_by_severity() -> None:
    def receiver(*labels: str) -> str:
        proc = run_tool("amtool", "config", "routes", "test", "--config.file", str(INFRA / "alertmanager.yml"),
                        *labels)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout.strip()

    assert receiver("alertname=ArbframeDailyLossLimitReached", "severity=critical") == "critical"
    assert receiver("alertname=ExchangeBanned", "severity=critical", "exchange=binance") == "critical"
    assert receiver("alertname=StorageWriteErrors", "severity=warning") == "warning"
    # every severity the rules use has a route, and every receiver the routes name exists
    config = yaml.safe_load((INFRA / "alertmanager.yml").read_text())
    names = {r["name"] for r in config["receivers"]}
    assert config["route"]["receiver"] in names
    assert {r["receiver"] for r in config["route"]["routes"]} <= names
    severities = {rule["labels"]["severity"] for rule in _alert_rules()}
    assert severities == {"critical", "warning"}
    for rule in config["inhibit_rules"]:  # inhibitions name alerts that exist
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            if matcher.startswith("alertname="):
                for name in matcher.split("=", 1)[1].strip('"~').split("|"):
                    assert name in {r["alert"] for r in _alert_rules()}, name


_PINS = {  # compose service -> (the binary the tests run, the image whose tag must be its version)
    "prometheus": ("promtool", "prom/prometheus"),
    "alertmanager": ("amtool", "prom/alertmanager"),
    "postgres-exporter": ("prometheus-postgres-exporter", "quay.io/prometheuscommunity/postgres-exporter"),
    "redis-exporter": ("prometheus-redis-exporter", "oliver006/redis_exporter"),
}


def test_compose_pins_the_versions_the_tests_run() -> None:
    """Each image tag is the version of the binary the tests run here, and the comment beside it says so."""
    from arbframe.testing.prometheus_server import find_binary

    raw = yaml.safe_load(COMPOSE.read_text())
    lines = COMPOSE.read_text().splitlines()
    missing = []
    for service, (binary, image) in _PINS.items():
        name, _, tag = raw["services"][service]["image"].rpartition(":")
        assert name == image and re.fullmatch(r"v\d+\.\d+\.\d+", tag), raw["services"][service]["image"]
        (line,) = [ln for ln in lines if f"image: {image}:{tag}" in ln]
        assert "# tested: " in line and tag[1:] in line.split("# tested:")[1], line
        path = find_binary(binary)
        if path is None:
            missing.append(binary)
            continue
        import subprocess

        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        version = re.search(r"(\d+\.\d+\.\d+)", proc.stdout + proc.stderr)
        assert version is not None, proc.stdout + proc.stderr
        assert version.group(1) == tag[1:], f"{service}: compose pins {tag}, the tests run {binary} {version.group(1)}"
    if missing:
        skip_or_fail(f"not installed, their pins unchecked: {missing}")


# ------------------------------------------------------------------------------------------------- compose
def _port(spec: object) -> tuple[str, int]:
    """(host_ip, container port) of a ports entry in short ("127.0.0.1:9121:9121/tcp") or long syntax."""
    if isinstance(spec, dict):
        return str(spec.get("host_ip", "")), int(spec["target"])
    parts = str(spec).split("/")[0].split(":")
    return (parts[0] if len(parts) == 3 else ""), int(parts[-1])


def _compose_config(env_file: Path) -> tuple[int, str, str]:
    proc = run_tool(
        "docker-compose", "--env-file", str(env_file), "-f", str(COMPOSE), "config",
        env=_clean_env(), cwd=INFRA,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_docker_compose_config_accepts_the_stack_with_env_example() -> None:
    rc, out, err = _compose_config(ENV_EXAMPLE)
    assert rc == 0, err
    config = yaml.safe_load(out)
    services = config["services"]
    assert set(services) == SERVICES

    app = services["arbframe-app"]
    assert app["build"]["dockerfile"] == "Dockerfile"
    assert Path(app["build"]["context"]).resolve() == ROOT
    assert app["command"][:2] == ["arbframe", "run"]
    assert app["depends_on"] == {
        "postgres": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"},
    }
    assert app["healthcheck"]["test"][1:3] == ["arbframe", "health"]
    named = {}
    for volume in app["volumes"]:
        if isinstance(volume, str):  # short syntax: source:target[:mode]
            source, target = volume.split(":")[:2]
            if not source.startswith((".", "/")):
                named[target] = source
        elif volume.get("type") == "volume":
            named[volume["target"]] = volume["source"]
    assert {"/app/data", "/app/logs"} <= set(named)
    assert set(named.values()) <= set(config["volumes"])
    # the credentials of .env.example reach the services that need them
    env = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line and
               not line.startswith("#"))
    assert env["POSTGRES_PASSWORD"] in app["environment"]["DATABASE_URL"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == env["POSTGRES_PASSWORD"]
    assert env["POSTGRES_PASSWORD"] in services["postgres-exporter"]["environment"]["DATA_SOURCE_NAME"]
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == env["GRAFANA_ADMIN_PASSWORD"]

    ports = {s: [_port(p) for p in svc.get("ports", [])] for s, svc in services.items()}
    published = {s: {p[1] for p in found} for s, found in ports.items()}
    assert published["redis-exporter"] == {9121}
    assert published["postgres-exporter"] == {9187}
    assert published["prometheus"] == {9090}
    assert published["grafana"] == {3000}
    assert published["arbframe-app"] == {8000}
    for found in ports.values():  # published on loopback unless HOST_BIND says otherwise
        assert all(host_ip == "127.0.0.1" for host_ip, _ in found)

    for name in ("postgres", "redis", "arbframe-app", "postgres-exporter", "prometheus", "grafana"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert set(config["volumes"]) >= {"postgres_data", "redis_data", "prometheus_data", "grafana_data",
                                      "app_data", "app_logs"}


def test_docker_compose_refuses_to_run_without_credentials(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    rc, _, err = _compose_config(empty)
    assert rc != 0
    assert "POSTGRES_" in err and "infra/.env" in err


def test_compose_file_matches_the_compose_spec_schema() -> None:
    schema_path = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
    if not schema_path.exists():
        skip_or_fail("the compose spec JSON schema ships with Debian's docker-compose package (not installed)")
    import jsonschema

    schema = json.loads(schema_path.read_text())
    raw = yaml.safe_load(COMPOSE.read_text())
    jsonschema.Draft201909Validator(schema).validate(raw)


def test_credentials_are_written_only_in_the_env_file() -> None:
    text = COMPOSE.read_text()
    env = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line and
               not line.startswith("#"))
    for key in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert env[key] not in text
    assert "arbitrage:arbitrage@" not in text
    # every variable the compose file needs without a default is documented in .env.example
    required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)(?::\?|\})", text))
    assert required <= set(env), required - set(env)
    # and the app config overlay only reads the environment for its connection strings
    app = (INFRA / "app.yml").read_text()
    assert "${DATABASE_URL}" in app and "${REDIS_URL}" in app
    assert "password" not in app.lower()


def test_prometheus_and_grafana_mounts_match_the_files() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    prom_mounts = dict(m.rsplit(":", 1)[0].split(":", 1) for m in raw["services"]["prometheus"]["volumes"]
                       if m.startswith("./"))
    assert prom_mounts["./prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    # rule_files resolve next to the config file in the container too
    rules = yaml.safe_load((INFRA / "prometheus.yml").read_text())["rule_files"]
    for rule in rules:
        assert (INFRA / rule).exists()
        assert prom_mounts[f"./{rule}"] == f"/etc/prometheus/{rule}"

    graf_mounts = dict(m.rsplit(":", 1)[0].split(":", 1) for m in raw["services"]["grafana"]["volumes"]
                       if m.startswith("./"))
    provider = yaml.safe_load((INFRA / "grafana/provisioning/dashboards/arbframe.yml").read_text())
    dash_path = provider["providers"][0]["options"]["path"]
    assert graf_mounts["./grafana/dashboards"] == dash_path
    assert graf_mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


# ------------------------------------------------------------------------------------------------- grafana
def test_grafana_datasource_and_dashboard_agree() -> None:
    ds = yaml.safe_load((INFRA / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == source["uid"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip()
            assert target["datasource"]["uid"] == source["uid"]
    for var in dash["templating"]["list"]:
        assert var["datasource"]["uid"] == source["uid"]


def test_dashboard_has_the_required_panels_without_overlap() -> None:
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    titles = " | ".join(p["title"].lower() for p in panels)
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for needle in ("pnl", "daily pnl", "premium", "win rate", "open positions", "tick latency",
                   "exchange errors", "rate-limit", "spool", "up"):
        assert needle in titles, needle
    for metric in ("arbitrage_total_pnl_krw", "arbitrage_daily_pnl_krw", "arbitrage_premium_ratio",
                   "arbitrage_win_rate", "arbitrage_open_positions", "arbitrage_tick_duration_seconds_bucket",
                   "arbframe_exchange_errors_total", "arbframe_exchange_rate_limit_waits_total",
                   "arbframe_storage_spool_depth", 'up{job="arbitrage-metrics"}'):
        assert metric in exprs, metric
    cells: dict[tuple[int, int], str] = {}
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


# ---------------------------------------------------------------------------------------------- Dockerfile
def _dockerignore_patterns() -> list[tuple[bool, str]]:
    out = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append((line.startswith("!"), line.lstrip("!")))
    return out


def _ignored(rel: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent directory excludes it."""
    parts = rel.split("/")
    ignored = False
    for negate, pattern in patterns:
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch.fnmatch(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(parts[depth - 1], pattern[3:])
            ):
                ignored = not negate
                break
    return ignored


def test_dockerfile_builds_a_non_root_image_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line for line in re.sub(r"\\\n", " ", text).splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    froms = [i for i in instructions if i.startswith("FROM ")]
    assert len(froms) == 1 and re.fullmatch(r"FROM python:3\.11\.\d+-slim-bookworm", froms[0]), froms
    users = [i.split()[1] for i in instructions if i.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    health = [i for i in instructions if i.startswith("HEALTHCHECK ")]
    assert len(health) == 1 and '"arbframe", "health"' in health[0]
    assert any(i.startswith("CMD ") and '"arbframe", "run"' in i for i in instructions)
    # the kernel (with the server extra) and every plugin distribution are installed
    install = next(i for i in instructions if i.startswith("RUN pip install"))
    assert '".[server]"' in install and "plugins/*/" in install
    # the shell loop in that RUN line, run here in the build context, names every plugin distribution
    loop = re.search(r"\$\((for p in .*?done)\)", install)
    assert loop is not None, install
    import subprocess

    listed = subprocess.run(["sh", "-c", loop.group(1)], cwd=ROOT, capture_output=True, text=True, check=True)
    expected = {f"./plugins/{d.name}/" for d in (ROOT / "plugins").iterdir() if (d / "pyproject.toml").exists()}
    assert set(listed.stdout.split()) == expected
    assert len(expected) >= 5


def test_dockerfile_installs_dependencies_before_the_source() -> None:
    """Editing code must not reinstall the dependencies: they are installed from the pyproject files alone."""
    import subprocess
    import sys

    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    deps = next(i for i, ln in enumerate(instructions) if "requirements_from_pyproject.py" in ln and
                ln.startswith("RUN "))
    source = instructions.index("COPY arbframe ./arbframe")
    assert deps < source < instructions.index("COPY plugins ./plugins")
    assert "pip install -r" in instructions[deps]
    copied = {ln.split()[1] for ln in instructions[:deps] if ln.startswith("COPY ")}
    for project in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        assert str(project.relative_to(ROOT)) in copied, f"{project.relative_to(ROOT)} not copied before the deps"
    assert "pyproject.toml" in copied
    final = next(ln for ln in instructions[source:] if ln.startswith("RUN pip install"))
    assert "--no-deps" in final and "pip check" in final
    # the script, run here, lists every third-party requirement of every distribution and none of ours
    plugins = sorted(ROOT.glob("plugins/*/pyproject.toml"))
    specs = ["pyproject.toml[server]", *(str(p.relative_to(ROOT)) for p in plugins)]
    out = subprocess.run([sys.executable, "infra/requirements_from_pyproject.py", *specs], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    assert not [r for r in out if r.lower().startswith("arbframe")]
    for needed in ("aiohttp", "apprise", "psycopg2-binary", "redis", "prometheus-client", "pluggy"):
        assert any(r.lower().startswith(needed) for r in out), needed


def _pyproject_readme() -> str:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, from the test extra
        import tomli as tomllib

    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("readme", ""))


def test_dockerfile_copies_exist_and_are_not_dockerignored() -> None:
    patterns = _dockerignore_patterns()
    for secret in (".env", "infra/.env", ".git/config", ".venv/bin/python"):
        assert _ignored(secret, patterns), secret
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    copies = [line.split()[1:-1] for line in text.splitlines() if line.startswith("COPY ")]
    assert copies
    readme = _pyproject_readme()
    for sources in copies:
        for src in sources:
            if src.startswith("--"):
                continue
            if src == readme and not (ROOT / src).exists():
                continue  # the kernel's README is written by its own issue; pip needs it, not this check
            assert (ROOT / src).exists(), f"COPY {src}: missing in the build context"
            assert not _ignored(src, patterns), f"COPY {src}: excluded by .dockerignore"
    for plugin in (ROOT / "plugins").iterdir():
        if (plugin / "pyproject.toml").exists():
            assert not _ignored(f"plugins/{plugin.name}/pyproject.toml", patterns)
            assert not _ignored(f"plugins/{plugin.name}/src", patterns)


def test_the_app_container_config_validates_with_the_compose_environment(tmp_path: Path) -> None:
    """What arbframe-app runs: `arbframe run --config infra/app.yml` with the environment compose gives it."""
    import subprocess
    import sys

    rc, out, err = _compose_config(ENV_EXAMPLE)
    assert rc == 0, err
    app = yaml.safe_load(out)["services"]["arbframe-app"]
    config_arg = app["command"][app["command"].index("--config") + 1]
    assert config_arg == "infra/app.yml"
    assert "COPY infra/app.yml ./infra/app.yml" in (ROOT / "Dockerfile").read_text()  # WORKDIR /app
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARBFRAME_", "DATABASE_URL", "REDIS_URL"))}
    env.update({k: str(v) for k, v in app["environment"].items()})
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    proc = subprocess.run(
        [sys.executable, "-m", "arbframe", "config", "show", "--config", str(ROOT / config_arg)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    assert shown["storage"]["backend"] == "postgres"
    assert shown["storage"]["postgres"]["dsn"].startswith("postgresql://arbitrage:***@postgres:5432/")
    assert shown["redis"] == {**shown["redis"], "enabled": True, "url": "redis://redis:6379/0"}
    assert shown["metrics_server"] == {"enabled": True, "host": "0.0.0.0", "port": 8000}
    assert shown["mode"] == "paper"


def test_operations_doc_covers_every_alert_and_dashboard_row() -> None:
    ops = (ROOT / "docs" / "OPERATIONS.md").read_text()
    rules = yaml.safe_load((INFRA / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert f"`{rule['alert']}`" in ops, rule["alert"]
    dash = json.loads(DASHBOARD.read_text())
    for row in (p for p in dash["panels"] if p["type"] == "row"):
        assert f"| {row['title']} |" in ops, row["title"]
    for panel in (p for p in dash["panels"] if p["type"] != "row"):
        assert panel["description"], f"panel {panel['title']!r} has no description"

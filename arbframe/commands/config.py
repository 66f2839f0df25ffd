"""``arbframe config validate|show|schema``."""

from __future__ import annotations

import argparse
import json
import os

from arbframe.commands.options import add_common_options


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("config", help="validate, show (secrets masked) or print the schema of the config")
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    for name, help_text, handler in (
        ("validate", "check the effective config (both passes) and exit 0, or 2 with the first error", validate),
        ("show", "print the effective config as YAML, secrets masked", show),
        ("schema", "print the JSON Schema composed from the kernel and every installed plugin", schema),
    ):
        action = actions.add_parser(name, help=help_text)
        add_common_options(action)
        action.set_defaults(handler=handler)
    return parser


def validate(args: argparse.Namespace) -> int:
    from arbframe.commands import load_kernel

    load_kernel(args)
    sources = ", ".join(["<embedded defaults>", *args.configs])
    print(f"config OK ({sources})")
    return 0


def show(args: argparse.Namespace) -> int:
    import yaml

    from arbframe.commands import load_kernel
    from arbframe.kernel.config import compose_schema, env_overrides, masked
    from arbframe.kernel.plugin_host import all_fragments

    kernel = load_kernel(args)
    full_schema = compose_schema(all_fragments(kernel))
    overridden = [name for name, _path, _value in env_overrides(os.environ)]
    if overridden:
        print(f"# environment overrides: {', '.join(overridden)}")
    print(yaml.safe_dump(masked(kernel.config, full_schema), sort_keys=False, allow_unicode=True), end="")
    return 0


def schema(args: argparse.Namespace) -> int:
    from arbframe.kernel.config import compose_schema, load_config, top_level_driver_sections
    from arbframe.kernel.plugin_host import Kernel, all_fragments

    kernel = Kernel(load_config(args.configs, check_installed=False))  # the schema needs no driver
    print(json.dumps(
        compose_schema(all_fragments(kernel), extra_sections=top_level_driver_sections()),
        indent=2, default=str,
    ))
    return 0

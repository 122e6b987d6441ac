#!/usr/bin/env bash
# npm run package: a versioned tarball installable on a host with Node but without npm:
#   orchestrator-agent-VERSION-linux-ARCH.tar.gz with one top directory orchestrator-agent-VERSION/ holding
#   dist/ (built JavaScript: src/ and machines/), ui/, diagrams/, conf/ (example config, systemd unit),
#   bin/orchestrator-agent, package.json, README.md and node_modules/ with production dependencies only.
# The repository's own dist/ and node_modules/ are left as they are. OUT_DIR (default: the repository) is
# where the tarball goes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

version=$(node -p 'require("./package.json").version')
arch=$(node -p 'process.arch')
name="orchestrator-agent-${version}"
tarball="${name}-linux-${arch}.tar.gz"
out_dir=$(realpath "${OUT_DIR:-$repo}")

work=$(mktemp -d "${TMPDIR:-/tmp}/oa-package-XXXXXX")
trap 'rm -rf "$work"' EXIT
stage="$work/$name"
mkdir -p "$stage"

# Built JavaScript, compiled fresh into the stage; only what the daemon runs is kept.
node node_modules/typescript/bin/tsc -p tsconfig.json --outDir "$stage/dist" --sourceMap false
rm -rf "$stage/dist/test" "$stage/dist/bench" "$stage/dist/scripts"

cp -r ui diagrams "$stage/"
mkdir -p "$stage/conf" "$stage/bin"
cp conf/orchestrator-agent.service "$stage/conf/"
cp conf/orchestrator-agent.conf.json "$stage/conf/orchestrator-agent.conf.example.json"
cp package.json package-lock.json README.md "$stage/"
cat > "$stage/bin/orchestrator-agent" <<'SH'
#!/bin/sh
# Runs the agent of the tree this script is in; arguments as for the daemon (--help lists them).
here=$(dirname "$(readlink -f "$0")")
MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2} exec node --max-semi-space-size=1 "$here/../dist/src/main.js" "$@"
SH
chmod 755 "$stage/bin/orchestrator-agent"

# Production dependencies only, exactly as locked; no install scripts (prepare would need the compiler).
(cd "$stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error)
rm -f "$stage/package-lock.json"

tar -czf "$out_dir/$tarball" -C "$work" --owner=0 --group=0 "$name"
echo "$out_dir/$tarball"

#!/usr/bin/env bash
# npm run test:mutation [MODULE...]: Stryker over each module in turn (default: every module of
# stryker.config.mjs), each with only its own fast tests, then reports/mutation.md from every module's last
# JSON report (reports/mutation/*.json, not committed). Not part of npm test or CI.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  mapfile -t mods < <(node --input-type=module -e 'const m = await import("./stryker.config.mjs"); console.log(Object.keys(m.modules).join("\n"))')
  set -- "${mods[@]}"
fi
npm run build --silent
for module in "$@"; do
  echo "== mutation testing $module"
  npx stryker run --mutate "$module"
done
node dist/scripts/mutation-summary.js reports/mutation/*.json

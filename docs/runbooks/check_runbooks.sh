#!/usr/bin/env bash
# Run the runbooks' `qfs-assure` command lines against a demo folder.
#
#   bash docs/runbooks/check_runbooks.sh DEMO_DIR
#
# DEMO_DIR is a folder where `qfs-assure demo` was run (it holds demo_deployment/ and evidence_store/).
# Every ```bash block of docs/runbooks/*.md and docs/configuration.md whose lines include the comment
# `# runbook-check` is extracted. Backslash continuations are joined, and every line calling
# `.venv/bin/qfs-assure` is run from DEMO_DIR with this repository's .venv. The script fails if any of
# them exits with a code other than 0 (passed) or 1 (a criterion failed), or if no command is found.
#
# The commands re-run activities, so they rewrite evidence in DEMO_DIR. The alert sinks and the
# QFS_* data locations are removed from the environment, so nothing leaves the demo folder.
set -uo pipefail

demo=${1:?usage: check_runbooks.sh DEMO_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv="$repo/.venv/bin"
[ -x "$venv/qfs-assure" ] || { echo "no $venv/qfs-assure (install the project first)"; exit 2; }
[ -d "$demo/evidence_store" ] && [ -d "$demo/demo_deployment" ] || { echo "$demo is not a demo folder (run qfs-assure demo in it)"; exit 2; }
demo=$(cd "$demo" && pwd)

docs=("$here"/*.md "$repo/docs/configuration.md")

# one command per line, prefixed with its source "file:line<TAB>"
extract() {
  awk '
    function flush(   i) { if (marked) for (i = 1; i <= n; i++) print cmds[i]; n = 0; marked = 0 }
    FNR == 1 { inblock = 0; n = 0; marked = 0; cont = "" }
    /^[[:space:]]*```bash[[:space:]]*$/ && !inblock { inblock = 1; n = 0; marked = 0; cont = ""; next }
    /^[[:space:]]*```[[:space:]]*$/ && inblock { flush(); inblock = 0; next }
    inblock {
      line = $0
      sub(/^[[:space:]]+/, "", line)
      if (line == "# runbook-check") { marked = 1; next }
      if (cont != "") { line = cont " " line; cont = "" }
      if (line ~ /\\$/) { sub(/\\$/, "", line); cont = line; next }
      if (line ~ /\.venv\/bin\/qfs-assure/) cmds[++n] = FILENAME ":" FNR "\t" line
    }
  ' "$@"
}

mapfile -t lines < <(extract "${docs[@]}")
if [ "${#lines[@]}" -eq 0 ]; then
  echo "no marked qfs-assure command found"
  exit 1
fi

cd "$demo"
unset QFS_EXPORT_ROOT QFS_SOR_URL QFS_EVIDENCE_ROOT QFS_ALERT_CONFIG QFS_ALERT_WEBHOOK_URLS \
      QFS_ALERT_SLACK_WEBHOOK_URLS QFS_ALERT_SMTP_HOST QFS_ALERT_STATE_DIR DAGSTER_HOME
failed=0
i=0
for entry in "${lines[@]}"; do
  i=$((i + 1))
  where=${entry%%$'\t'*}
  cmd=${entry#*$'\t'}
  run=${cmd//.venv\/bin\//$venv/}
  out=$(bash -c "$run" 2>&1)
  rc=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ]; then
    printf 'ok   rc=%s  %s\n' "$rc" "${where#"$repo"/}"
  else
    failed=$((failed + 1))
    printf 'FAIL rc=%s  %s\n     %s\n' "$rc" "${where#"$repo"/}" "$cmd"
    printf '%s\n' "$out" | tail -n 5 | sed 's/^/     | /'
  fi
done
echo "${#lines[@]} commands, $failed failed"
[ "$failed" -eq 0 ]

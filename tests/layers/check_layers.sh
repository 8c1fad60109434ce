#!/usr/bin/env bash
# The layering rule of the README, checked on the sources: each folder may include only the
# folders listed for it. Prints every include that points the wrong way and exits 1 if any does.
#
# Usage: tests/layers/check_layers.sh [REPOSITORY_ROOT]
set -euo pipefail
root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

# folder -> the project folders its sources may include (besides itself).
declare -A allowed=(
  [common]=""
  [protocol]="common"
  [transport]="common protocol"
  [moleculer]="common protocol transport"
  [gateway]="common protocol"
  [services]="common protocol transport moleculer gateway"
  [app]="common protocol transport moleculer gateway services"
)
folders="common protocol transport moleculer gateway services app"

violations=0
checked=0
for folder in $folders; do
  for file in "$root/$folder"/*.hpp "$root/$folder"/*.cpp; do
    [ -e "$file" ] || continue
    checked=$((checked + 1))
    while IFS= read -r line; do
      target=${line#*\"}
      target=${target%%/*}
      [ "$target" = "$folder" ] && continue
      case " ${allowed[$folder]} " in
        *" $target "*) ;;
        *)
          if [[ " $folders " == *" $target "* ]]; then
            echo "layers: ${file#"$root"/} includes $target/ (${folder}/ may include: ${allowed[$folder]:-nothing})"
            violations=$((violations + 1))
          fi
          ;;
      esac
    done < <(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[a-z_]+/' "$file" || true)
  done
done

echo "layers: $checked files checked, $violations include(s) against the layering"
[ "$violations" -eq 0 ]

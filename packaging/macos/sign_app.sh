#!/usr/bin/env bash
# Signs Hearth.app for notarization: every Mach-O file inside with the hardened runtime and a
# secure timestamp, from the innermost out, then the bundle itself with the entitlements.
#
#   packaging/macos/sign_app.sh dist/Hearth.app "Developer ID Application: NAME (TEAMID)" \
#       packaging/macos/entitlements.plist
#
# `codesign --deep` is not used: it signs nested code without entitlements and in an order
# that Apple's notary service rejects for PyInstaller's Python and Qt frameworks.
set -euo pipefail

app="${1:?usage: sign_app.sh APP IDENTITY ENTITLEMENTS}"
identity="${2:?usage: sign_app.sh APP IDENTITY ENTITLEMENTS}"
entitlements="${3:?usage: sign_app.sh APP IDENTITY ENTITLEMENTS}"

sign=(codesign --force --timestamp --options runtime --sign "$identity")

# Deepest paths first, so a library is signed before the framework that holds it.
by_depth() { awk -F/ '{ print NF "\t" $0 }' | sort -rn -k1,1 | cut -f2-; }

# Mach-O files (symlinks are skipped: the file they point to is signed once).
while IFS= read -r file; do
  kind="$(file -b "$file")"
  case "$kind" in
    *Mach-O*executable*) "${sign[@]}" --entitlements "$entitlements" "$file" ;;
    *Mach-O*) "${sign[@]}" "$file" ;;
  esac
done < <(find "$app/Contents" -type f ! -path "$app/Contents/MacOS/*" | by_depth)

# Framework bundles (Python.framework, Qt's) once their contents are signed.
while IFS= read -r framework; do
  "${sign[@]}" "$framework"
done < <(find "$app/Contents" -type d -name '*.framework' | by_depth)

# The app's own executables, then the bundle, with the entitlements.
find "$app/Contents/MacOS" -type f -perm -u+x -print0 |
  xargs -0 "${sign[@]}" --entitlements "$entitlements"
"${sign[@]}" --entitlements "$entitlements" "$app"

codesign --verify --deep --strict --verbose=2 "$app"

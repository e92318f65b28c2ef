#!/usr/bin/env bash
# Packs Hearth.app into a compressed DMG with a link to /Applications (drag to install).
#
#   packaging/macos/make_dmg.sh dist/Hearth.app dist/Hearth-0.1.0-macos-arm64-full.dmg "Hearth 0.1.0"
#
# Sign the app before (sign_app.sh): ditto keeps the signature, and the DMG is signed,
# notarized and stapled after (see .github/workflows/release.yml).
set -euo pipefail

app="${1:?usage: make_dmg.sh APP OUTPUT.dmg VOLUME_NAME}"
out="${2:?usage: make_dmg.sh APP OUTPUT.dmg VOLUME_NAME}"
volume="${3:?usage: make_dmg.sh APP OUTPUT.dmg VOLUME_NAME}"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
ditto "$app" "$stage/$(basename "$app")"
ln -s /Applications "$stage/Applications"

rm -f "$out"
# hdiutil now and then fails with "Resource busy" on CI machines: try a few times.
for attempt in 1 2 3; do
  if hdiutil create -volname "$volume" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$out"; then
    hdiutil verify "$out"
    exit 0
  fi
  echo "hdiutil create failed (attempt $attempt), trying again" >&2
  sleep 5
done
echo "error: could not create $out" >&2
exit 1

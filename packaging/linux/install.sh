#!/bin/sh
# Install Hearth from this folder into your home (no root): ~/.local/opt/hearth, the
# command ~/.local/bin/hearth, a menu entry and icons. Run it again to update.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
prefix=${HEARTH_PREFIX:-$HOME/.local/opt/hearth}
bin=${HEARTH_BIN:-$HOME/.local/bin}

if [ ! -x "$here/hearth/hearth" ]; then
  echo "This folder has no hearth/hearth program: unpack the whole archive, then run ./install.sh again." >&2
  exit 1
fi
need=$(du -sk "$here/hearth" | cut -f1)
mkdir -p "$(dirname "$prefix")" "$bin" "$data/applications"
free=$(df -Pk "$(dirname "$prefix")" | awk 'NR==2 {print $4}')
if [ "$free" -lt "$need" ]; then
  echo "Not enough space in $(dirname "$prefix"): Hearth needs $((need / 1024)) MB, $((free / 1024)) MB are free. Free some space or set HEARTH_PREFIX to another folder." >&2
  exit 1
fi

# Copy beside the old one, then swap: an interrupted install never leaves half a program.
rm -rf "$prefix.new"
cp -R "$here/hearth" "$prefix.new"
rm -rf "$prefix.old"
[ -e "$prefix" ] && mv "$prefix" "$prefix.old"
mv "$prefix.new" "$prefix"
rm -rf "$prefix.old"

ln -sf "$prefix/hearth" "$bin/hearth"
(cd "$here/share" && find icons -type f) | while read -r icon; do
  mkdir -p "$data/$(dirname "$icon")"
  cp "$here/share/$icon" "$data/$icon"
done
sed "s|@BIN@|$bin|" "$here/share/applications/hearth.desktop" > "$data/applications/hearth.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$data/applications" >/dev/null 2>&1 || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q "$data/icons/hicolor" >/dev/null 2>&1 || true

echo "Hearth is installed in $prefix."
case ":$PATH:" in
  *":$bin:"*) echo "Start it from the applications menu, or type: hearth" ;;
  *) echo "Start it from the applications menu, or run $bin/hearth ($bin is not on your PATH)." ;;
esac

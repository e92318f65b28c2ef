#!/bin/sh
# Remove what install.sh put in your home. Your chats, settings and models stay in
# ~/.local/share/hearth (delete that folder yourself to remove them too).
set -eu
data=${XDG_DATA_HOME:-$HOME/.local/share}
prefix=${HEARTH_PREFIX:-$HOME/.local/opt/hearth}
bin=${HEARTH_BIN:-$HOME/.local/bin}
rm -rf "$prefix"
[ -L "$bin/hearth" ] && rm -f "$bin/hearth"
rm -f "$data/applications/hearth.desktop"
find "$data/icons/hicolor" -name 'hearth.png' -o -name 'hearth.svg' 2>/dev/null | xargs rm -f 2>/dev/null || true
echo "Hearth is removed. Your chats and models are still in $data/hearth."

#!/bin/sh
# Check every file of this Hearth kit against SHA256SUMS, with the tools a bare system has:
# sha256sum (Linux) or shasum (macOS). Exit 0 when all match, 1 when any is damaged or
# missing, 2 when the check cannot run at all.
cd "$(dirname "$0")" || exit 2

if command -v sha256sum >/dev/null 2>&1; then
    set -- sha256sum -c SHA256SUMS
elif command -v shasum >/dev/null 2>&1; then
    set -- shasum -a 256 -c SHA256SUMS
else
    echo "verify: neither sha256sum nor shasum is installed on this system." >&2
    echo "        Verify on another machine, or on Windows with: powershell -ExecutionPolicy Bypass -File verify.ps1" >&2
    exit 2
fi

if [ ! -f SHA256SUMS ]; then
    echo "verify: SHA256SUMS is missing from $(pwd), so nothing can be checked." >&2
    echo "        Copy the whole kit folder again." >&2
    exit 1
fi

listed=$(grep -c '^[0-9a-fA-F]\{64\}  ' SHA256SUMS)
echo "Checking $listed files against SHA256SUMS (large models take a while)..."
result=$(LC_ALL=C "$@" 2>/dev/null)
status=$?

# "path: OK", "path: FAILED" (damaged), "path: FAILED open or read" (missing or unreadable).
missing=$(printf '%s\n' "$result" | sed -n 's/: FAILED open or read$//p')
damaged=$(printf '%s\n' "$result" | sed -n 's/: FAILED$//p')

if [ "$status" -eq 0 ] && [ -z "$missing" ] && [ -z "$damaged" ]; then
    echo "OK: all $listed files match SHA256SUMS; the kit is complete and undamaged."
    exit 0
fi

if [ -n "$missing" ]; then
    printf '%s\n' "$missing" | while IFS= read -r f; do echo "MISSING  $f"; done
fi
if [ -n "$damaged" ]; then
    printf '%s\n' "$damaged" | while IFS= read -r f; do echo "DAMAGED  $f"; done
fi
if [ -z "$missing" ] && [ -z "$damaged" ]; then
    echo "verify: $1 could not read SHA256SUMS (exit status $status)." >&2
    echo "        Copy the whole kit folder again." >&2
    exit 1
fi
echo "FAILED: the files above are missing or do not match SHA256SUMS: the copy is incomplete or damaged." >&2
echo "        Copy the kit again from the original (or ask for a new one) and run verify again; do not install from this copy." >&2
exit 1

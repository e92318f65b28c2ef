# Check every file of this Hearth kit against SHA256SUMS with PowerShell's Get-FileHash
# (Windows 8.1 / Server 2012 R2 and later, and PowerShell 7 anywhere).
# Run:  powershell -ExecutionPolicy Bypass -File verify.ps1
# Exit 0 when all match, 1 when any is damaged or missing, 2 when the check cannot run.

$kit = Split-Path -Parent $MyInvocation.MyCommand.Path
$sums = Join-Path $kit 'SHA256SUMS'

if (-not (Get-Command Get-FileHash -ErrorAction SilentlyContinue)) {
    Write-Host 'verify: this PowerShell has no Get-FileHash (it needs PowerShell 4 or later).'
    Write-Host '        Update Windows PowerShell, or verify on another machine with ./verify.'
    exit 2
}
if (-not (Test-Path -LiteralPath $sums -PathType Leaf)) {
    Write-Host "verify: SHA256SUMS is missing from $kit, so nothing can be checked."
    Write-Host '        Copy the whole kit folder again.'
    exit 1
}

$entries = @()
foreach ($line in (Get-Content -LiteralPath $sums -Encoding UTF8)) {
    if ($line -match '^([0-9a-fA-F]{64}) [ *](.+)$') {
        $entries += ,@($Matches[1].ToLowerInvariant(), $Matches[2])
    }
}
if ($entries.Count -eq 0) {
    Write-Host 'verify: SHA256SUMS lists no files in the expected format.'
    Write-Host '        Copy the whole kit folder again.'
    exit 1
}

Write-Host "Checking $($entries.Count) files against SHA256SUMS (large models take a while)..."
$bad = 0
$n = 0
foreach ($entry in $entries) {
    $want = $entry[0]
    $rel = $entry[1]
    $n += 1
    Write-Progress -Activity 'Verifying the kit' -Status $rel -PercentComplete (100 * ($n - 1) / $entries.Count)
    $path = Join-Path $kit ($rel -replace '/', '\')
    if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
        Write-Host "MISSING  $rel"
        $bad += 1
        continue
    }
    try {
        $got = (Get-FileHash -LiteralPath $path -Algorithm SHA256 -ErrorAction Stop).Hash.ToLowerInvariant()
    } catch {
        Write-Host "MISSING  $rel (cannot be read: $($_.Exception.Message))"
        $bad += 1
        continue
    }
    if ($got -ne $want) {
        Write-Host "DAMAGED  $rel"
        $bad += 1
    }
}
Write-Progress -Activity 'Verifying the kit' -Completed

if ($bad -gt 0) {
    Write-Host "FAILED: $bad file(s) above are missing or do not match SHA256SUMS: the copy is incomplete or damaged."
    Write-Host '        Copy the kit again from the original (or ask for a new one) and run verify again; do not install from this copy.'
    exit 1
}
Write-Host "OK: all $($entries.Count) files match SHA256SUMS; the kit is complete and undamaged."
exit 0

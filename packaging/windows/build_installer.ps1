# Builds the per-user NSIS installer from the PyInstaller onedir build in dist\hearth.
#
#   ./packaging/windows/build_installer.ps1 -Version 0.1.0 -Edition full [-Sign]
#
# Writes dist\Hearth-<version>-windows-x64-<edition>-setup.exe. -Sign has makensis sign the
# uninstaller it embeds and the finished installer with sign.ps1 (the certificate comes
# from the environment, see there).
param(
    [Parameter(Mandatory = $true)] [string] $Version,
    [Parameter(Mandatory = $true)] [ValidateSet("full", "chat")] [string] $Edition,
    [switch] $Sign
)
$ErrorActionPreference = "Stop"

$root = Resolve-Path (Join-Path $PSScriptRoot "..\..")
$source = Join-Path $root "dist\hearth"
# hearthw.exe (the window, which the shortcuts start) and hearth.exe (the command line).
foreach ($program in @("hearthw.exe", "hearth.exe")) {
    if (-not (Test-Path (Join-Path $source $program))) {
        throw "dist\hearth\$program is missing: run PyInstaller on packaging/hearth.spec first."
    }
}

if (-not (Get-Command makensis -ErrorAction SilentlyContinue)) {
    $nsis = "${env:ProgramFiles(x86)}\NSIS"
    if (-not (Test-Path (Join-Path $nsis "makensis.exe"))) {
        choco install nsis -y --no-progress
        if ($LASTEXITCODE -ne 0) { throw "NSIS could not be installed." }
    }
    $env:PATH = "$nsis;$env:PATH"
}

$setup = Join-Path $root "dist\Hearth-$Version-windows-x64-$Edition-setup.exe"
$defines = @("/DVERSION=$Version", "/DEDITION=$Edition", "/DSRCDIR=$source", "/DOUTFILE=$setup")
if ($Version -notmatch '^\d+\.\d+\.\d+$') {
    # A pre-release (0.2.0rc1, 0.2.0.dev1): Windows' file version takes four numbers only.
    if ($Version -notmatch '^(\d+)\.(\d+)\.(\d+)') { throw "Version $Version does not start with x.y.z." }
    $defines += "/DVIVERSION=$($Matches[1]).$($Matches[2]).$($Matches[3]).0"
}
if ($Sign) {
    $signer = Join-Path $PSScriptRoot "sign.ps1"
    # makensis runs "<SIGN_CMD> <file>"; quotes inside a /D value do not survive PowerShell's
    # argument passing, so the path must do without them.
    if ($signer -match '\s') { throw "The checkout path has a space ($signer): signing needs one without." }
    $defines += "/DSIGN_CMD=pwsh -NoProfile -File $signer"
}
& makensis /V3 @defines (Join-Path $PSScriptRoot "hearth.nsi")
if ($LASTEXITCODE -ne 0) { throw "makensis failed (exit $LASTEXITCODE)." }
Write-Output "Built $setup"

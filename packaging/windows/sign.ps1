# Signs Windows executables with Hearth's code-signing certificate (Authenticode, SHA-256).
#
#   ./packaging/windows/sign.ps1 FILE [FILE...]
#
# Reads WINDOWS_CERTIFICATE_PFX (the .pfx, base64), WINDOWS_CERTIFICATE_PASSWORD and, when set,
# WINDOWS_TIMESTAMP_URL (an RFC 3161 time-stamp server, so the signature outlives the
# certificate). The release workflow runs it only when the certificate secret is set.
param(
    [Parameter(Mandatory = $true, ValueFromRemainingArguments = $true)]
    [string[]] $Files
)
$ErrorActionPreference = "Stop"

if (-not $env:WINDOWS_CERTIFICATE_PFX) {
    throw "WINDOWS_CERTIFICATE_PFX is not set: there is no certificate to sign with."
}

# signtool comes with the Windows SDK, which is not on PATH: take the newest x64 one.
$signtool = Get-ChildItem "${env:ProgramFiles(x86)}\Windows Kits\10\bin\*\x64\signtool.exe" |
    Sort-Object FullName | Select-Object -Last 1
if (-not $signtool) {
    throw "signtool.exe was not found: install the Windows SDK."
}

$pfx = Join-Path ([System.IO.Path]::GetTempPath()) ("hearth-" + [guid]::NewGuid() + ".pfx")
try {
    [System.IO.File]::WriteAllBytes($pfx, [Convert]::FromBase64String($env:WINDOWS_CERTIFICATE_PFX))
    $arguments = @("sign", "/fd", "SHA256", "/f", $pfx, "/p", $env:WINDOWS_CERTIFICATE_PASSWORD)
    if ($env:WINDOWS_TIMESTAMP_URL) {
        $arguments += @("/tr", $env:WINDOWS_TIMESTAMP_URL, "/td", "SHA256")
    }
    foreach ($file in $Files) {
        & $signtool.FullName @arguments $file
        if ($LASTEXITCODE -ne 0) { throw "signtool could not sign $file." }
    }
}
finally {
    Remove-Item -Force -ErrorAction SilentlyContinue $pfx
}
